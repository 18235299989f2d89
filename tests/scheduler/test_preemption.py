"""Preemption with hollow nodes and an in-process scheduler, on a real API server: a pod no node fits evicts
exactly the lowest-priority pods it needs (and no more), is nominated to that node and runs there;
``preemptionPolicy: Never`` waits instead; a node whose victims a disruption budget protects is avoided
when another node would do."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from controlplane.api.objects import from_manifest
from controlplane.api.pb import core_pb2, policy_pb2
from controlplane.client.client import ApiClient
from tests.scheduler.conftest import StartHollow, StartScheduler
from tests.scheduler.test_scheduling import pod, wait_for


async def classes(client: ApiClient, **values: int) -> dict[str, str]:
    """Create PriorityClasses with unique names; returns short name -> class name."""
    names = {}
    for short, value in values.items():
        name = f"{short}-{uuid.uuid4().hex[:6]}"
        policy = "Never" if short.endswith("never") else "PreemptLowerPriority"
        obj = from_manifest(
            {
                "apiVersion": "scheduling.k8s.io/v1",
                "kind": "PriorityClass",
                "metadata": {"name": name},
                "value": value,
                "preemptionPolicy": policy,
            }
        )
        await client.create(obj)
        names[short] = name
    return names


async def place(
    client: ApiClient, namespace: str, scheduler: str, name: str, cpu: str, klass: str, **labels: str
) -> core_pb2.Pod:
    p = pod(name, namespace, scheduler, cpu=cpu, priorityClassName=klass)
    p.metadata.labels.update(labels)
    await client.create(p)
    return await wait_for(client, namespace, name, lambda x: bool(x.spec.node_name))


async def names(client: ApiClient, namespace: str) -> set[str]:
    pods = (await client.list(core_pb2.Pod, namespace)).items
    return {p.metadata.name for p in pods if not p.metadata.HasField("deletion_timestamp")}


async def test_a_high_priority_pod_evicts_exactly_the_lowest_priority_pods_it_needs(
    client: ApiClient, hollow: StartHollow, start_scheduler: StartScheduler, namespace: str
) -> None:
    name = f"pre-{uuid.uuid4().hex[:6]}"
    await hollow(1, capacity={"cpu": "1", "memory": "8Gi", "pods": "110"})
    await start_scheduler(name)
    c = await classes(client, low=10, mid=20, high=1000)
    await place(client, namespace, name, "mid", "100m", c["mid"])
    for i in range(3):
        await place(client, namespace, name, f"low-{i}", "300m", c["low"])
        await asyncio.sleep(1.1)  # distinct start times: the newest are the first to go
    big = pod("big", namespace, name, cpu="500m", priorityClassName=c["high"])
    await client.create(big)
    placed = await wait_for(client, namespace, "big", lambda x: bool(x.spec.node_name), timeout=30)
    # 500m needed on a full 1-CPU node: two 300m low pods go; the mid pod and the oldest low pod stay.
    assert await names(client, namespace) == {"mid", "low-0", "big"}
    assert placed.status.nominated_node_name == placed.spec.node_name
    events = (await client.list(core_pb2.Event, namespace)).items
    preempted = sorted(e.involved_object.name for e in events if e.reason == "Preempted")
    assert preempted == ["low-1", "low-2"]
    assert all(f"Preempted by {namespace}/big" in e.message for e in events if e.reason == "Preempted")


async def test_preemption_policy_never_waits_instead_of_evicting(
    client: ApiClient, hollow: StartHollow, start_scheduler: StartScheduler, namespace: str
) -> None:
    name = f"pre-{uuid.uuid4().hex[:6]}"
    await hollow(1, capacity={"cpu": "1", "memory": "8Gi", "pods": "110"})
    scheduler = await start_scheduler(name)
    c = await classes(client, low=10, highnever=1000)
    await place(client, namespace, name, "low-0", "800m", c["low"])
    await client.create(pod("patient", namespace, name, cpu="500m", priorityClassName=c["highnever"]))
    for _ in range(10):  # and it stays so
        await asyncio.sleep(0.3)
        assert await names(client, namespace) == {"low-0", "patient"}
        assert not (await client.get(core_pb2.Pod, "patient", namespace)).spec.node_name
    assert scheduler.preemptions == 0


async def test_a_budget_steers_preemption_to_the_node_where_it_breaks_nothing(
    client: ApiClient, hollow: StartHollow, start_scheduler: StartScheduler, namespace: str
) -> None:
    name = f"pre-{uuid.uuid4().hex[:6]}"
    await hollow(2, capacity={"cpu": "1", "memory": "8Gi", "pods": "110"})
    await start_scheduler(name)
    c = await classes(client, low=10, high=1000)
    placed: dict[str, list[str]] = {}
    for i in range(4):
        p = await place(client, namespace, name, f"low-{i}", "500m", c["low"], app="guarded" if i < 2 else "free")
        placed.setdefault(p.spec.node_name, []).append(p.metadata.name)
    assert sorted(len(v) for v in placed.values()) == [2, 2]
    budget: Any = from_manifest(
        {
            "apiVersion": "policy/v1",
            "kind": "PodDisruptionBudget",
            "metadata": {"name": "guard", "namespace": namespace},
            "spec": {"minAvailable": 2, "selector": {"matchLabels": {"app": "guarded"}}},
        }
    )
    await client.create(budget)
    # The budget's status as the disruption controller would write it: nothing may go.
    live = await client.get(policy_pb2.PodDisruptionBudget, "guard", namespace)
    live.status.observed_generation = live.metadata.generation
    live.status.current_healthy = live.status.desired_healthy = live.status.expected_pods = 2
    await client.update_status(live)
    await asyncio.sleep(0.5)  # the scheduler's budget informer sees it
    await client.create(pod("big", namespace, name, cpu="500m", priorityClassName=c["high"]))
    await wait_for(client, namespace, "big", lambda x: bool(x.spec.node_name), timeout=30)
    left = await names(client, namespace)
    assert {"low-0", "low-1"} <= left, "a pod the budget protects was preempted although another node would do"
    assert len(left & {"low-2", "low-3"}) == 1  # one 500m pod was enough
