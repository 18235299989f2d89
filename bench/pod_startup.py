"""Pod start-up latency on real agents: N pods created at once, create -> Running as seen by a watch.

Starts its own etcd (one member, fsync on), a ``navarch-apiserver`` and ``--agents`` node agents (each on
its own loopback address), then creates ``--pods`` Pods at once, bound round-robin to the nodes (the
scheduler is not involved), each running ``sleep``. A watch records when every pod is first reported
Running; the script prints p50/p99/max of create -> Running and the time until all were Running.
Nothing is asserted: record the figures in docs/performance.md.

    python bench/pod_startup.py [--pods 50] [--agents 2]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import tempfile
import time
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


async def measure(client: ApiClient, nodes: list[str], count: int, timeout: float) -> tuple[list[float], float]:
    """Create ``count`` pods at once; (create -> Running latencies, seconds until all Running)."""
    created: dict[str, float] = {}
    running: dict[str, float] = {}
    done = asyncio.Event()
    listed = await client.list(core_pb2.Pod, "bench")

    async def watch() -> None:
        async for ev in client.watch(core_pb2.Pod, "bench", resource_version=listed.resource_version):
            p = ev.object
            if ev.type == "BOOKMARK" or p.metadata.name in running:
                continue
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
    return [running[n] - created[n] for n in running], max(running.values()) - began


async def main(opts: argparse.Namespace, api: str, nodes: list[str]) -> None:
    client = ApiClient(ClientConfig(endpoints=[api], timeout=30))
    try:
        await wait_ready(client, nodes)
        ns = from_manifest({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "bench"}})
        await client.create(ns)
        latencies, total = await measure(client, nodes, opts.pods, opts.timeout)
    finally:
        await client.close()
    print(f"# pod_startup: {opts.pods} pods created at once on {len(nodes)} agents (real processes)")
    print(f"# {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    print(f"{'create -> Running':<24}{'p50 ms':>10}{'p99 ms':>10}{'max ms':>10}{'all Running s':>16}")
    print(f"{'':<24}{pct(latencies, 50):>10.0f}{pct(latencies, 99):>10.0f}{max(latencies) * 1000:>10.0f}{total:>16.2f}")
    print(f"pods per second to Running: {opts.pods / total:.1f}")


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
            processes.agent([api], node, f"127.0.0.{i + 2}", data, workdir / f"{node}.log", "--no-cgroups").start()
        )
    try:
        asyncio.run(main(opts, api, nodes))
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
    run(parser.parse_args())
