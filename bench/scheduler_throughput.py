"""Scheduler throughput on hollow nodes: pods bound per second, create -> bound latency, scheduler CPU.

Starts its own etcd (one member, fsync on), a ``navarch-apiserver``, one ``navarch-agent --hollow`` process
with ``--nodes`` simulated nodes, and a ``navarch-scheduler``; then creates ``--pods`` Pods as fast as the
API accepts them (``--creators`` concurrent callers) while a watch records when each pod is first seen
bound. Prints pods bound per second (sustained: between 10 % and 90 % of the pods bound; and over the whole
run), create -> bound p50/p99, the scheduler's CPU seconds per 1,000 pods, and raw etcd put throughput from
Python measured in the same run, with the ratio. Nothing is asserted: record the figures in
docs/performance.md.

    python bench/scheduler_throughput.py [--nodes 1000] [--pods 10000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from common import cpu_seconds, etcd_put_rate, pct

from controlplane.api.objects import from_manifest
from controlplane.api.pb import core_pb2
from controlplane.client.client import ApiClient, ClientConfig
from controlplane.client.informer import Informer
from controlplane.launcher import processes
from controlplane.launcher.etcd import EtcdCluster, free_port


def pod(i: int) -> core_pb2.Pod:
    """A small pod with requests, so that resources matter."""
    obj = from_manifest(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": f"p{i}", "namespace": "bench"},
            "spec": {
                "containers": [
                    {"name": "c", "command": ["sleep"], "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}}}
                ]
            },
        }
    )
    assert isinstance(obj, core_pb2.Pod)
    return obj


async def wait_nodes(client: ApiClient, count: int, timeout: float) -> None:
    """Until ``count`` nodes are registered."""
    async with asyncio.timeout(timeout):
        while True:
            if len((await client.list(core_pb2.Node)).items) >= count:
                return
            await asyncio.sleep(1)


async def measure(
    opts: argparse.Namespace, api: str, scheduler_pid: int, start_scheduler: Callable[[], int]
) -> dict[str, float]:
    client = ApiClient(ClientConfig(endpoints=[api], timeout=60))
    try:
        await wait_nodes(client, opts.nodes, 300)
        await client.create(from_manifest({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "bench"}}))
        created: dict[str, float] = {}
        bound: dict[str, float] = {}
        done = asyncio.Event()

        def seen(p: core_pb2.Pod) -> None:
            if p.spec.node_name and p.metadata.name not in bound:
                bound[p.metadata.name] = time.perf_counter()
                if len(bound) == opts.pods:
                    done.set()

        # An informer, not a bare watch: a watcher that falls behind a burst is closed and must resume.
        informer: Informer[core_pb2.Pod] = Informer(client, core_pb2.Pod, namespace="bench")
        informer.add_event_handler(seen, lambda old, new: seen(new), None)
        watcher = asyncio.create_task(informer.run())
        await informer.wait_for_sync(30)
        if not opts.precreate:
            scheduler_pid = start_scheduler()
        cpu_before = cpu_seconds(scheduler_pid) if scheduler_pid else 0.0
        counter = iter(range(opts.pods))

        async def creator() -> None:
            for i in counter:
                created[f"p{i}"] = time.perf_counter()
                await client.create(pod(i))

        began = time.perf_counter()
        await asyncio.gather(*(creator() for _ in range(opts.creators)))
        created_all = time.perf_counter()
        create_rate = opts.pods / (created_all - began)
        if opts.precreate:
            # Every pod exists before the scheduler starts: the figures are the scheduler's (and binding's) own.
            scheduler_pid = start_scheduler()
            cpu_before = 0.0
            began = time.perf_counter()
            created = dict.fromkeys(created, began)
        try:
            await asyncio.wait_for(done.wait(), opts.timeout)
        finally:
            watcher.cancel()
            await asyncio.gather(watcher, return_exceptions=True)
        cpu = cpu_seconds(scheduler_pid) - cpu_before
    finally:
        await client.close()
    times = sorted(bound.values())
    lo, hi = times[len(times) // 10], times[len(times) * 9 // 10]
    latencies = [bound[n] - created[n] for n in bound]
    return {
        "create_rate": create_rate,
        "overall": opts.pods / (times[-1] - began),
        "sustained": (len(times) * 8 // 10) / (hi - lo) if hi > lo else float("nan"),
        "p50": pct(latencies, 50),
        "p99": pct(latencies, 99),
        "cpu_per_1000": cpu / opts.pods * 1000,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--pods", type=int, default=10000)
    parser.add_argument("--creators", type=int, default=32, help="concurrent Pod creators")
    parser.add_argument("--timeout", type=float, default=600.0)
    parser.add_argument(
        "--hollow-watch",
        choices=["per-node", "shared"],
        default="per-node",
        help="one pod watch per hollow node (as real agents) or one shared watch",
    )
    parser.add_argument(
        "--precreate",
        action="store_true",
        help="create every pod first, then start the scheduler (latency from its start)",
    )
    opts = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="navarch-bench-sched-"))
    etcd = EtcdCluster(1, fast=False).start()
    api = f"127.0.0.1:{free_port()}"
    daemons = [processes.apiserver(etcd.endpoints, api, workdir / "apiserver.log").start()]
    try:
        put_rate = asyncio.run(etcd_put_rate(etcd.endpoints))
        hollow = [
            str(processes.BIN / "navarch-agent"),
            "--server",
            api,
            "--hollow",
            "--count",
            str(opts.nodes),
            "--capacity",
            "cpu=32,memory=128Gi,pods=110",
            "--hollow-watch",
            opts.hollow_watch,
        ]
        daemons.append(processes.Daemon("hollow", hollow, workdir / "hollow.log").start())
        scheduler = [str(processes.BIN / "navarch-scheduler"), "--server", api, "--listen", "127.0.0.1:0"]

        def start_scheduler() -> int:
            daemon = processes.Daemon("scheduler", scheduler, workdir / "scheduler.log").start()
            daemons.append(daemon)
            return daemon.proc.pid if daemon.proc else 0

        r = asyncio.run(measure(opts, api, 0, start_scheduler))
    finally:
        for d in reversed(daemons):
            d.stop()
        etcd.stop()
    mode = (
        "pods created first, then the scheduler started"
        if opts.precreate
        else "scheduler running while pods are created"
    )
    print(
        f"# scheduler_throughput: {opts.nodes} hollow nodes ({opts.hollow_watch} watch), {opts.pods} pods, "
        f"{opts.creators} creators; {mode}"
    )
    print(f"# {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, etcd fsync on")
    print(f"pods created per second (API accepted):  {r['create_rate']:8.0f}")
    print(f"pods bound per second, sustained:         {r['sustained']:8.0f}")
    print(f"pods bound per second, whole run:         {r['overall']:8.0f}")
    print(f"create -> bound p50 / p99 (ms):           {r['p50']:8.0f} / {r['p99']:.0f}")
    print(f"scheduler CPU seconds per 1,000 pods:     {r['cpu_per_1000']:8.2f}")
    print(f"raw etcd puts per second (same run):      {put_rate:8.0f}")
    print(f"ratio bound (sustained) / etcd puts:      {r['sustained'] / put_rate:8.3f}")


if __name__ == "__main__":
    main()
