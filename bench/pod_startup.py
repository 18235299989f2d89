"""Pod start-up latency on real agents: N pods created at once, create -> Running as seen by a watch.

Starts its own etcd (one member, fsync on), a ``navarch-apiserver`` and ``--agents`` node agents (each on
its own loopback address), then creates ``--pods`` Pods at once, bound round-robin to the nodes (the
scheduler is not involved), each running ``sleep``. A watch records when every pod is first reported
Running; the script prints p50/p99/max of create -> Running and the time until all were Running, the Pod
writes each start cost (watch events from creation to Running), the agents' memory (idle and with the pods)
and each container supervisor's (RSS, and USS: the pages it does not share with its fork server), and in the
same run the rate of bare ``subprocess.Popen`` of the same command, with the ratio of the two rates.
Nothing is asserted: record the figures in docs/performance.md.

    python bench/pod_startup.py [--pods 50] [--agents 2]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from controlplane.api.objects import from_manifest
from controlplane.api.pb import core_pb2
from controlplane.client.client import ApiClient, ClientConfig
from controlplane.launcher import processes
from controlplane.launcher.etcd import EtcdCluster, free_port


def pct(values: list[float], q: float) -> float:
    """The q-th percentile in milliseconds."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))] * 1000


def pod(name: str, node: str) -> core_pb2.Pod:
    """A one-container pod bound to ``node``."""
    obj = from_manifest(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "namespace": "bench"},
            "spec": {
                "nodeName": node,
                "terminationGracePeriodSeconds": 0,
                "containers": [{"name": "main", "command": ["sleep", "3600"]}],
            },
        }
    )
    assert isinstance(obj, core_pb2.Pod)
    return obj


async def wait_ready(client: ApiClient, nodes: list[str], timeout: float = 60) -> None:
    """Until every node reports Ready."""
    async with asyncio.timeout(timeout):
        while True:
            listed = await client.list(core_pb2.Node)
            ready = {
                n.metadata.name
                for n in listed.items
                if any(c.type == "Ready" and c.status == "True" for c in n.status.conditions)
            }
            if set(nodes) <= ready:
                return
            await asyncio.sleep(0.2)


def memory_kib(pid: int) -> tuple[int, int]:
    """(RSS, USS) of a process in KiB, from /proc/PID/smaps_rollup (USS = private clean + private dirty)."""
    rss = uss = 0
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            key, _, rest = line.partition(":")
            if key == "Rss":
                rss = int(rest.split()[0])
            elif key in ("Private_Clean", "Private_Dirty"):
                uss += int(rest.split()[0])
    except (OSError, ValueError, IndexError):
        pass
    return rss, uss


def named(name: str) -> list[int]:
    """Pids of processes whose name (comm) is ``name``."""
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() == name:
                    out.append(int(entry.name))
            except OSError:
                continue
    return out


def bare_popen_rate(count: int) -> float:
    """Processes per second that ``subprocess.Popen`` starts the same command at, one after another."""
    began = time.perf_counter()
    procs = [subprocess.Popen(["sleep", "3600"]) for _ in range(count)]
    elapsed = time.perf_counter() - began
    for p in procs:
        p.kill()
        p.wait()
    return count / elapsed


@dataclass
class Measured:
    latencies: list[float]
    total: float
    writes: dict[str, int] = field(default_factory=dict)
    """Per pod: MODIFIED events from its creation until it was first seen Running."""


async def measure(client: ApiClient, nodes: list[str], count: int, timeout: float) -> Measured:
    """Create ``count`` pods at once and follow them until all are Running."""
    created: dict[str, float] = {}
    running: dict[str, float] = {}
    writes: dict[str, int] = {}
    done = asyncio.Event()
    listed = await client.list(core_pb2.Pod, "bench")

    async def watch() -> None:
        async for ev in client.watch(core_pb2.Pod, "bench", resource_version=listed.resource_version):
            p = ev.object
            if ev.type == "BOOKMARK" or p.metadata.name in running:
                continue
            if ev.type == "MODIFIED":
                writes[p.metadata.name] = writes.get(p.metadata.name, 0) + 1
            statuses = p.status.container_statuses
            if p.status.phase == "Running" and statuses and all(s.state.HasField("running") for s in statuses):
                running[p.metadata.name] = time.perf_counter()
                if len(running) == count:
                    done.set()
                    return

    # The watch starts at the listed revision, so it misses nothing even if it opens after the first create.
    watcher = asyncio.create_task(watch())

    async def create(i: int) -> None:
        name = f"p{i}"
        created[name] = time.perf_counter()
        await client.create(pod(name, nodes[i % len(nodes)]))

    began = time.perf_counter()
    await asyncio.gather(*(create(i) for i in range(count)))
    try:
        await asyncio.wait_for(done.wait(), timeout)
    finally:
        watcher.cancel()
        await asyncio.gather(watcher, return_exceptions=True)
    return Measured([running[n] - created[n] for n in running], max(running.values()) - began, writes)


async def main(opts: argparse.Namespace, api: str, nodes: list[str], agent_pids: list[int]) -> None:
    client = ApiClient(ClientConfig(endpoints=[api], timeout=30))
    try:
        await wait_ready(client, nodes)
        ns = from_manifest({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "bench"}})
        await client.create(ns)
        await asyncio.sleep(3)  # let the agents settle after registering
        idle = [memory_kib(p)[0] for p in agent_pids]
        m = await measure(client, nodes, opts.pods, opts.timeout)
        await asyncio.sleep(1)
        busy = [memory_kib(p)[0] for p in agent_pids]
        shims = [memory_kib(p) for p in named("navarch-shim")]
        servers = [memory_kib(p) for p in named("navarch-forksrv")]
    finally:
        await client.close()
    popen_rate = bare_popen_rate(opts.pods)
    rate = opts.pods / m.total
    print(f"# pod_startup: {opts.pods} pods created at once on {len(nodes)} agents (real processes)")
    print(f"# {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, --shim {opts.shim}")
    print(f"{'create -> Running':<24}{'p50 ms':>10}{'p99 ms':>10}{'max ms':>10}{'all Running s':>16}")
    lat = m.latencies
    print(f"{'':<24}{pct(lat, 50):>10.0f}{pct(lat, 99):>10.0f}{max(lat) * 1000:>10.0f}{m.total:>16.2f}")
    print(f"pods per second to Running: {rate:.1f}")
    print(f"bare Popen of the same command, same run: {popen_rate:.0f}/s; ratio {rate / popen_rate:.3f}")
    writes = sorted(m.writes.get(f"p{i}", 0) for i in range(opts.pods))
    print(f"Pod writes from creation to Running: p50 {writes[len(writes) // 2]}, max {writes[-1]} (pods created bound)")
    idle_mib, busy_mib = (", ".join(f"{k / 1024:.0f}" for k in ks) for ks in (idle, busy))
    print(f"agent RSS MiB: idle {idle_mib}; with the pods {busy_mib}")
    if servers:
        print(f"fork server RSS MiB: {', '.join(f'{r / 1024:.1f}' for r, _ in servers)}")
    if shims:
        rss = sorted(r for r, _ in shims)
        uss = sorted(u for _, u in shims)
        print(
            f"per-container supervisor ({len(shims)}): RSS p50 {rss[len(rss) // 2] / 1024:.1f} MiB, "
            f"USS p50 {uss[len(uss) // 2] / 1024:.2f} MiB (max {uss[-1] / 1024:.2f})"
        )


def run(opts: argparse.Namespace) -> None:
    """Start the cluster, measure, and stop everything (workloads included)."""
    workdir = Path(tempfile.mkdtemp(prefix="navarch-bench-"))
    etcd = EtcdCluster(1, fast=False).start()
    api = f"127.0.0.1:{free_port()}"
    daemons = [processes.apiserver(etcd.endpoints, api, workdir / "apiserver.log").start()]
    nodes = [f"bench-{i}" for i in range(opts.agents)]
    for i, node in enumerate(nodes):
        data = workdir / node
        daemons.append(
            processes.agent(
                [api], node, f"127.0.0.{i + 2}", data, workdir / f"{node}.log", "--no-cgroups", "--shim", opts.shim
            ).start()
        )
    agent_pids = [d.proc.pid for d in daemons[1:] if d.proc is not None]
    try:
        asyncio.run(main(opts, api, nodes, agent_pids))
    finally:
        for daemon in reversed(daemons):
            daemon.stop()
        for node in nodes:
            processes.kill_workloads(workdir / node)
        etcd.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pods", type=int, default=50)
    parser.add_argument("--agents", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for all pods to run")
    parser.add_argument(
        "--shim", choices=("auto", "native", "python"), default="auto", help="the agents' container supervisor"
    )
    run(parser.parse_args())
