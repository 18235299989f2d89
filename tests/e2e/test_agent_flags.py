"""docs/agent.md's node flags on a real agent: ``--labels`` and ``--taints`` land on its Node, ``--capacity``
overrides what it detects, ``allocatable`` is capacity minus ``--reserved`` (plausible bugs: a flag parsed
but never written to the Node; reserved added instead of subtracted; a taint's effect dropped); the pressure
conditions, on a healthy node and on a disk the test fills."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from controlplane.api.pb import core_pb2
from controlplane.api.quantity import parse_quantity
from controlplane.client.client import ApiClient
from tests.e2e.conftest import StartAgent, eventually_async


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
    """The pressure conditions docs/agent.md lists are written, False on a healthy machine."""
    agent = await start_agent()
    node = await client.get(core_pb2.Node, agent.node)
    conditions = {c.type: c.status for c in node.status.conditions}
    assert conditions["Ready"] == "True"
    for kind in ("MemoryPressure", "DiskPressure", "PIDPressure"):
        assert conditions.get(kind) == "False", conditions


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 32 MiB tmpfs to be the agent's data directory (a disk the test can fill)."""
    mount = tmp_path / "small-disk"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=32m", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


async def test_a_filling_disk_turns_disk_pressure_on_and_off(
    start_agent: StartAgent, client: ApiClient, small_disk: Path
) -> None:
    """DiskPressure turns True once the data directory's filesystem has less than 10 % free, stays True while
    it is full, and turns False again when space comes back; its lastTransitionTime marks the two changes only
    (plausible bugs: conditions measured once at registration; the data dir's filesystem not the one measured;
    every heartbeat stamping a new transition time)."""
    agent = await start_agent("--data-dir", str(small_disk))

    async def disk(node_name: str) -> core_pb2.Node:
        return await client.get(core_pb2.Node, node_name)

    def condition(node: core_pb2.Node, kind: str) -> tuple[str, int]:
        (c,) = [c for c in node.status.conditions if c.type == kind]
        return c.status, c.last_transition_time.seconds

    before = condition(await disk(agent.node), "DiskPressure")
    assert before[0] == "False"
    filler = small_disk / "filler"
    filler.write_bytes(b"\0" * (30 * 2**20))  # 30 of 32 MiB: under 10 % free

    async def pressure(expected: str) -> bool:
        return condition(await disk(agent.node), "DiskPressure")[0] == expected

    await eventually_async(lambda: pressure("True"), timeout=20)
    on = await disk(agent.node)
    (c,) = [c for c in on.status.conditions if c.type == "DiskPressure"]
    assert c.reason == "AgentHasDiskPressure" and f"free in {small_disk}" in c.message
    assert condition(on, "Ready")[0] == "True" and condition(on, "MemoryPressure")[0] == "False"
    # Still True (and the same transition) over several heartbeats.
    for _ in range(4):
        await asyncio.sleep(1)
        assert condition(await disk(agent.node), "DiskPressure") == condition(on, "DiskPressure")
    filler.unlink()
    await eventually_async(lambda: pressure("False"), timeout=20)
    off = await disk(agent.node)
    assert condition(off, "DiskPressure")[1] >= condition(on, "DiskPressure")[1]
    assert condition(off, "Ready")[1] == condition(on, "Ready")[1] == condition(await disk(agent.node), "Ready")[1]
