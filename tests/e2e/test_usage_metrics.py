"""``navarch top`` shows what a real process uses, whether the node enforces limits with cgroups or not
(the figures then come from the process tree in /proc)."""

from __future__ import annotations

import asyncio
import re

import pytest

from controlplane.api.pb import core_pb2
from controlplane.client.client import ApiClient
from nodeagent.cgroups import CgroupDriver
from tests.cli.conftest import Cli
from tests.e2e.conftest import StartAgent, pod_manifest, wait_pod
from tests.helpers import eventually_async

pytestmark = pytest.mark.e2e

# One core busy, and 200 MiB touched page by page (so it is resident, not just reserved).
BURN = [
    "python3",
    "-c",
    "x = bytearray(200 * 1024 * 1024)\nfor i in range(0, len(x), 4096): x[i] = 1\nwhile True: pass",
]
ROW = re.compile(r"^(\S+)\s+(\d+)m\s+(\d+)Mi$")


@pytest.mark.parametrize("source", ["cgroup", "proc"])
async def test_a_busy_pod_shows_about_one_core_and_its_memory(
    start_agent: StartAgent, client: ApiClient, cli: Cli, namespace: str, source: str
) -> None:
    if source == "cgroup" and CgroupDriver.detect("probe") is None:
        pytest.skip("no writable cgroup hierarchy on this host")
    flags = ["--usage-interval", "2", *(["--no-cgroups"] if source == "proc" else [])]
    agent = await start_agent(*flags)
    await client.create(pod_manifest("burn", namespace, agent.node, BURN))
    await wait_pod(client, namespace, "burn", lambda p: p.status.phase == "Running")
    seen: list[str] = []

    async def near_one_core_and_200_mib() -> bool:
        r = await cli("top", "pods", "-n", namespace, "--no-headers")
        seen.append(r.out + r.err)
        match = ROW.match(r.out.strip())
        if match is None:
            return False
        millicores, mib = int(match.group(2)), int(match.group(3))
        return 700 <= millicores <= 1300 and 160 <= mib <= 240

    # Within 30 s of starting, and still so a few samples later (not a one-off reading).
    await eventually_async(near_one_core_and_200_mib, timeout=30)
    for _ in range(2):
        await eventually_async(near_one_core_and_200_mib, timeout=10)
    listed = await client.pod_metrics(namespace, "burn")
    [pod] = listed.items
    assert [c.source for c in pod.containers] == [source], pod
    nodes = await cli("top", "nodes", agent.node, "--no-headers")
    cpu = re.match(rf"^{agent.node}\s+(\d+)m\s+\d+%\s+\d+Mi\s+\d+%$", nodes.out.strip())
    assert cpu is not None and int(cpu.group(1)) >= 700, nodes.out + nodes.err


async def test_top_says_when_there_are_no_metrics_yet(cli: Cli, namespace: str) -> None:
    r = await cli("top", "pods", "-n", namespace)
    assert r.code == 1 and "metrics not available yet" in r.err, r.err


async def test_observe_mode_enforces_nothing_and_reports_a_would_be_oom_kill(
    start_agent: StartAgent, client: ApiClient, namespace: str
) -> None:
    agent = await start_agent("--limits-mode", "observe", "--usage-interval", "2")
    # 200 MiB held under a 64 MiB limit: an enforcing node kills it (OOMKilled); this one lets it run.
    pod = pod_manifest("hog", namespace, agent.node, BURN, container={"resources": {"limits": {"memory": "64Mi"}}})
    await client.create(pod)
    await wait_pod(client, namespace, "hog", lambda p: p.status.phase == "Running")

    async def reported() -> bool:
        events = await client.list(core_pb2.Event, namespace, field_selector="involvedObject.name=hog")
        return any(e.reason == "WouldOOMKill" and "over its memory limit 64Mi" in e.message for e in events.items)

    await eventually_async(reported, timeout=30)
    # Still running, never restarted, and its status says the limits are only observed.
    for _ in range(3):
        current = await client.get(core_pb2.Pod, "hog", namespace)
        assert current.status.phase == "Running", current.status
        assert current.status.container_statuses[0].restart_count == 0, current.status
        await asyncio.sleep(1)
    assert current.status.resource_enforcement == "observe"
    events = await client.list(core_pb2.Event, namespace, field_selector="involvedObject.name=hog,reason=WouldOOMKill")
    assert sum(e.count or 1 for e in events.items) == 1, [(e.message, e.count) for e in events.items]  # once
