"""``navarch top`` shows what a real process uses, whether the node enforces limits with cgroups or not
(the figures then come from the process tree in /proc)."""

from __future__ import annotations

import re

import pytest

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
