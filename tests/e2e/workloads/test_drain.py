"""``navarch drain`` through disruption budgets, on real agents and processes, with the real scheduler and
controller manager: a 3-replica Deployment whose pods all sit on the node being drained, under a budget
``minAvailable: 2``, moves one pod at a time — the next eviction waits until the replacement runs Ready on
the other node — and never has fewer than 2 Ready pods (checked all along, not once). A budget that allows
nothing holds the drain until ``--deadline``, after which the rest are deleted."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from controlplane.api.objects import from_manifest
from controlplane.api.pb import core_pb2, policy_pb2
from controlplane.client.client import ApiClient
from controlplane.controllers.podcontrol import pod_is_ready
from tests.cli.conftest import Cli
from tests.e2e.conftest import eventually_async
from tests.e2e.workloads.conftest import StartAgents


def deployment(name: str, namespace: str, replicas: int) -> Any:
    return from_manifest(
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": {"app": name}},
                "template": {
                    "metadata": {"labels": {"app": name}},
                    "spec": {
                        "terminationGracePeriodSeconds": 1,
                        "containers": [{"name": "c", "command": ["sleep", "3600"]}],
                    },
                },
            },
        }
    )


def pdb(name: str, namespace: str, min_available: int) -> Any:
    return from_manifest(
        {
            "apiVersion": "policy/v1",
            "kind": "PodDisruptionBudget",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"minAvailable": min_available, "selector": {"matchLabels": {"app": name}}},
        }
    )


async def ready_on(client: ApiClient, namespace: str, node: str) -> int:
    pods = (await client.list(core_pb2.Pod, namespace)).items
    return sum(
        1
        for p in pods
        if p.spec.node_name == node and pod_is_ready(p) and not p.metadata.HasField("deletion_timestamp")
    )


async def test_drain_moves_one_pod_at_a_time_under_a_budget_and_the_deadline_forces_the_rest(
    client: ApiClient, namespace: str, agents: StartAgents, cli: Cli
) -> None:
    (first,) = await agents(1)
    await client.create(deployment("db", namespace, 3))
    await eventually_async(lambda: _ready_count(client, namespace, first.node, 3), timeout=60)
    await client.create(pdb("db", namespace, 2))

    async def budget_allows(n: int) -> bool:
        b = await client.get(policy_pb2.PodDisruptionBudget, "db", namespace)
        return b.status.disruptions_allowed == n and b.status.observed_generation == b.metadata.generation

    await eventually_async(lambda: budget_allows(1), timeout=30)
    (second,) = await agents(1)

    fewest_ready = 3
    sampling = True

    async def sample() -> None:
        nonlocal fewest_ready
        while sampling:
            pods = (await client.list(core_pb2.Pod, namespace)).items
            live = [p for p in pods if not p.metadata.HasField("deletion_timestamp") and pod_is_ready(p)]
            fewest_ready = min(fewest_ready, len(live))
            await asyncio.sleep(0.2)

    sampler = asyncio.create_task(sample())
    try:
        drained = await cli("drain", first.node, "--timeout", "120", timeout=150)
    finally:
        sampling = False
        with contextlib.suppress(Exception):
            await sampler
    assert drained.code == 0, drained.err
    assert f"node/{first.node} drained" in drained.out
    assert "would violate the pod's disruption budget" in drained.err  # it had to wait at least once
    assert fewest_ready >= 2
    assert await ready_on(client, namespace, second.node) == 3

    # A budget that allows nothing: drain waits, then --deadline deletes the pods anyway.
    # (The first node stays cordoned: nothing drained from the second can run anywhere.)
    await client.create(pdb("hold", namespace, 5))  # a second budget for other pods
    await client.create(deployment("hold", namespace, 1))
    await eventually_async(lambda: _ready_count(client, namespace, second.node, 4), timeout=60)
    forced = await cli("drain", second.node, "--deadline", "3", "--timeout", "90", timeout=120)
    assert forced.code == 0, forced.err
    assert "deadline passed: deleting pod" in forced.out


async def _ready_count(client: ApiClient, namespace: str, node: str, want: int) -> bool:
    return await ready_on(client, namespace, node) == want
