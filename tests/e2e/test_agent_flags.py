"""docs/agent.md's node flags on a real agent: ``--labels`` and ``--taints`` land on its Node, ``--capacity``
overrides what it detects, ``allocatable`` is capacity minus ``--reserved`` (plausible bugs: a flag parsed
but never written to the Node; reserved added instead of subtracted; a taint's effect dropped)."""

from __future__ import annotations

from controlplane.api.pb import core_pb2
from controlplane.api.quantity import parse_quantity
from controlplane.client.client import ApiClient
from tests.e2e.conftest import StartAgent


async def test_node_flags_shape_the_node(start_agent: StartAgent, client: ApiClient) -> None:
    agent = await start_agent(
        "--labels",
        "zone=z1,disk=ssd",
        "--taints",
        "dedicated=db:NoSchedule,gpu:PreferNoSchedule",
        "--capacity",
        "cpu=3,memory=6Gi,pods=20",
        "--reserved",
        "cpu=500m,memory=1Gi",
    )
    node = await client.get(core_pb2.Node, agent.node)
    assert node.metadata.labels["zone"] == "z1" and node.metadata.labels["disk"] == "ssd"
    taints = {(t.key, t.value, t.effect) for t in node.spec.taints}
    assert {("dedicated", "db", "NoSchedule"), ("gpu", "", "PreferNoSchedule")} <= taints
    cap, alloc = node.status.capacity, node.status.allocatable
    assert parse_quantity(cap["cpu"]) == 3 and parse_quantity(cap["memory"]) == 6 * 2**30
    assert parse_quantity(cap["pods"]) == 20
    assert parse_quantity(alloc["cpu"]) == parse_quantity("2500m")
    assert parse_quantity(alloc["memory"]) == 5 * 2**30
    assert parse_quantity(alloc["pods"]) == 20


async def test_a_healthy_node_reports_no_pressure(start_agent: StartAgent, client: ApiClient) -> None:
    """The pressure conditions docs/agent.md lists are written, False on a healthy machine (that they turn
    True under pressure is not tested here: it needs a full disk or memory)."""
    agent = await start_agent()
    node = await client.get(core_pb2.Node, agent.node)
    conditions = {c.type: c.status for c in node.status.conditions}
    assert conditions["Ready"] == "True"
    for kind in ("MemoryPressure", "DiskPressure", "PIDPressure"):
        assert conditions.get(kind) == "False", conditions
