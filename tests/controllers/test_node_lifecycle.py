"""Node lifecycle and taint eviction against a real API server: silent nodes (registered by the test, whose
Lease nobody renews) next to hollow nodes that heartbeat like real agents."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest

from controlplane.api.errors import NotFoundError
from controlplane.api.objects import from_manifest
from controlplane.api.pb import coordination_pb2, core_pb2
from controlplane.api.placement import TAINT_UNREACHABLE
from controlplane.client.client import ApiClient
from controlplane.controllers.nodelifecycle import LEASE_NAMESPACE, ZONE_LABEL, NodeLifecycleController, ready_status
from tests.controllers.conftest import StartManager
from tests.helpers import eventually_async
from tests.scheduler.conftest import StartHollow

FAST = {"node_monitor_grace_period": 2.0, "node_startup_grace_period": 2.0, "node_monitor_period": 0.3}


@pytest.fixture
async def silent_node(client: ApiClient) -> AsyncIterator[Any]:
    """``await silent_node(name, zone)``: a Ready node with a Lease that is never renewed."""
    made: list[str] = []

    async def make(name: str, zone: str = "") -> core_pb2.Node:
        node = core_pb2.Node(api_version="v1", kind="Node")
        node.metadata.name = name
        node.metadata.labels[ZONE_LABEL] = zone
        node = await client.create(node)
        node.status.conditions.add(type="Ready", status="True", reason="AgentReady")
        node = await client.update_status(node)
        lease = coordination_pb2.Lease(api_version="coordination/v1", kind="Lease")
        lease.metadata.name, lease.metadata.namespace = name, LEASE_NAMESPACE
        lease.spec.holder_identity = name
        lease.spec.renew_time.GetCurrentTime()
        with contextlib.suppress(Exception):
            await client.delete(coordination_pb2.Lease, name, LEASE_NAMESPACE)
        await client.create(lease)
        made.append(name)
        return node

    yield make
    for name in made:
        with contextlib.suppress(NotFoundError):
            await client.delete(core_pb2.Node, name)


def bound_pod(name: str, namespace: str, node: str, tolerations: list[dict[str, Any]]) -> core_pb2.Pod:
    return from_manifest(  # type: ignore[return-value]
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {
                "nodeName": node,
                "tolerations": tolerations,
                "containers": [{"name": "main", "command": ["sleep", "1"]}],
            },
        }
    )


async def tainted(client: ApiClient, name: str) -> bool:
    node = await client.get(core_pb2.Node, name)
    return any(t.key == TAINT_UNREACHABLE and t.effect == "NoExecute" for t in node.spec.taints)


async def test_silent_node_becomes_unknown_is_tainted_and_its_pods_evicted_after_their_toleration(
    client: ApiClient, namespace: str, start_manager: StartManager, silent_node: Any, hollow: StartHollow
) -> None:
    await hollow(2)  # healthy neighbours, so this is not a full disruption
    await silent_node("quiet-1")
    short = [{"key": TAINT_UNREACHABLE, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 1}]
    forever = [{"key": TAINT_UNREACHABLE, "operator": "Exists", "effect": "NoExecute"}]
    await client.create(bound_pod("short", namespace, "quiet-1", short))
    await client.create(bound_pod("forever", namespace, "quiet-1", forever))
    defaulted = await client.create(bound_pod("defaulted", namespace, "quiet-1", []))
    assert any(t.key == TAINT_UNREACHABLE and t.toleration_seconds == 30 for t in defaulted.spec.tolerations)
    await start_manager(["node-lifecycle", "taint-eviction"], **FAST)

    async def unknown() -> bool:
        return ready_status(await client.get(core_pb2.Node, "quiet-1")) == "Unknown"

    await eventually_async(unknown, timeout=15)
    await eventually_async(lambda: tainted(client, "quiet-1"), timeout=10)

    async def short_evicted() -> bool:
        p = await client.get(core_pb2.Pod, "short", namespace)
        return p.metadata.HasField("deletion_timestamp")

    await eventually_async(short_evicted, timeout=10)
    for name in ("forever", "defaulted"):  # infinite toleration; 30 s not yet over
        assert not (await client.get(core_pb2.Pod, name, namespace)).metadata.HasField("deletion_timestamp")

    # The agent comes back: Lease renewed and Ready reported, so the taint goes.
    lease = await client.get(coordination_pb2.Lease, "quiet-1", LEASE_NAMESPACE)
    lease.spec.renew_time.GetCurrentTime()
    await client.update(lease)
    node = await client.get(core_pb2.Node, "quiet-1")
    for c in node.status.conditions:
        c.status = "True"
    await client.update_status(node)

    async def untainted() -> bool:
        return not await tainted(client, "quiet-1")

    await eventually_async(untainted, timeout=10)


async def test_mostly_failed_small_zone_is_not_evicted(
    client: ApiClient, start_manager: StartManager, silent_node: Any, hollow: StartHollow
) -> None:
    await hollow(1, labels={ZONE_LABEL: "zone-b"})
    await hollow(1, labels={ZONE_LABEL: "zone-a"})
    for i in range(6):  # 6 of 7 nodes in zone-a go silent: partial disruption of a small zone
        await silent_node(f"zone-a-{i}", "zone-a")
    # A fast normal rate: without the zone rule every silent node would be tainted within the test.
    manager = await start_manager(["node-lifecycle"], node_eviction_rate=100.0, **FAST)

    async def all_unknown() -> bool:
        nodes = [await client.get(core_pb2.Node, f"zone-a-{i}") for i in range(6)]
        return all(ready_status(n) == "Unknown" for n in nodes)

    await eventually_async(all_unknown, timeout=15)
    controller = manager.controllers[0]

    async def partial() -> bool:
        assert isinstance(controller, NodeLifecycleController)
        return controller.zone_states.get("zone-a") == "PartialDisruption"

    await eventually_async(partial, timeout=5)
    syncs = controller.syncs
    await eventually_async(lambda: asyncio.sleep(0, result=controller.syncs > syncs + 6), timeout=10)
    # The zone is partially disrupted once more than 2 and at least 55 % of its 7 nodes are down, i.e. from
    # the fourth silent node on: up to three may be tainted before (as tokens allow), never the other three.
    assert 1 <= sum([await tainted(client, f"zone-a-{i}") for i in range(6)]) <= 3


async def test_every_node_silent_taints_nothing(
    client: ApiClient, start_manager: StartManager, silent_node: Any
) -> None:
    for i in range(2):
        await silent_node(f"alone-{i}", "zone-c")
    nodes = (await client.list(core_pb2.Node)).items
    if any(ready_status(n) == "True" and n.metadata.labels.get(ZONE_LABEL) != "zone-c" for n in nodes):
        for n in nodes:  # leftovers of other tests in this module's cluster
            if not n.metadata.name.startswith("alone-"):
                with contextlib.suppress(NotFoundError):
                    await client.delete(core_pb2.Node, n.metadata.name)
    manager = await start_manager(["node-lifecycle"], node_eviction_rate=100.0, **FAST)

    async def unknown() -> bool:
        nodes = [await client.get(core_pb2.Node, f"alone-{i}") for i in range(2)]
        return all(ready_status(n) == "Unknown" for n in nodes)

    await eventually_async(unknown, timeout=15)

    async def none_tainted() -> bool:
        return not any([await tainted(client, f"alone-{i}") for i in range(2)])

    # The first silent node may be tainted before the second is noticed; once all are down the taints go.
    await eventually_async(none_tainted, timeout=10)
    controller = manager.controllers[0]
    syncs = controller.syncs
    await eventually_async(lambda: asyncio.sleep(0, result=controller.syncs > syncs + 4), timeout=10)
    assert await none_tainted()
