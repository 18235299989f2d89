"""Watch fan-out: API server CPU per pod created when every node holds its own ``spec.nodeName`` watch.

Starts its own etcd (one member, fsync on) and a ``navarch-apiserver`` process. For each watcher count
(one watcher per simulated node, each with its own ``spec.nodeName=<node>`` field selector, as real agents
hold them and as kubemark models them), opens the watches, creates ``--pods`` Pods pre-bound to random
nodes, and records when each pod reaches its node's watcher. Prints, per watcher count: the API server's
CPU milliseconds per pod (from /proc, so the benchmark's own client CPU is excluded), pods created per
second, create -> delivered p50/p99, pods not delivered within the timeout, and the CPU ratio against the
smallest watcher count. Nothing is asserted: record the figures in docs/performance.md.

    python bench/watch_fanout.py [--watchers 10,1000,3000,5000] [--pods 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import random
import tempfile
import time
from pathlib import Path

import grpc
import grpc.aio
from common import cpu_seconds, pct

from controlplane import transport
from controlplane.api.objects import from_manifest, wrap
from controlplane.api.pb import api_pb2, api_pb2_grpc
from controlplane.launcher import processes
from controlplane.launcher.etcd import EtcdCluster, free_port

WATCHERS_PER_CHANNEL = 100


def pod(name: str, node: str) -> api_pb2.Object:
    return wrap(
        from_manifest(
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": name, "namespace": "bench"},
                "spec": {"nodeName": node, "containers": [{"name": "c", "command": ["sleep", "3600"]}]},
            }
        )
    )


async def one_round(port: int, server_pid: int, watchers: int, pods: int, creators: int, tag: str) -> dict[str, float]:
    channels = [transport.make_channel([f"127.0.0.1:{port}"]) for _ in range(max(1, watchers // WATCHERS_PER_CHANNEL))]
    stubs = [api_pb2_grpc.ApiStub(c) for c in channels]
    created_at: dict[str, float] = {}
    delivered: dict[str, float] = {}
    calls = []
    errors: dict[str, int] = {}
    all_in = asyncio.Event()

    ready: set[str] = set()
    all_ready = asyncio.Event()

    async def watch(node: str, stub: api_pb2_grpc.ApiStub) -> None:
        call = stub.Watch(api_pb2.WatchRequest(kind="pods", namespace="bench", field_selector=f"spec.nodeName={node}"))
        calls.append(call)
        try:
            async for ev in call:
                if ev.object.pod.metadata.name == f"{node}-ready":
                    ready.add(node)
                    if len(ready) == watchers:
                        all_ready.set()
                    continue
                if ev.type == "ADDED":
                    delivered.setdefault(ev.object.pod.metadata.name, time.perf_counter())
                    if len(delivered) >= pods:
                        all_in.set()
        except grpc.aio.AioRpcError as err:
            if err.code() != grpc.StatusCode.CANCELLED:
                errors[err.code().name] = errors.get(err.code().name, 0) + 1

    creator_stub = api_pb2_grpc.ApiStub(transport.make_channel([f"127.0.0.1:{port}"]))
    # One pod per node first: each watch starts with its node's pod, which proves the watch is registered
    # (kubemark measures established nodes too).
    nodes = iter(range(watchers))

    async def create_ready() -> None:
        for i in nodes:
            await creator_stub.Create(api_pb2.CreateRequest(object=pod(f"{tag}-n{i}-ready", f"{tag}-n{i}")))

    await asyncio.gather(*(create_ready() for _ in range(creators)))
    tasks = []
    for i in range(watchers):
        tasks.append(asyncio.create_task(watch(f"{tag}-n{i}", stubs[i % len(stubs)])))
        if i % 50 == 49:
            # Opened in steps, as agents start: gRPC (1.85, asyncio) cancels a share of the streams when
            # thousands are opened in the same instant (a bare grpc.aio server does the same).
            await asyncio.sleep(0.05)
    try:
        await asyncio.wait_for(all_ready.wait(), 60)
    except TimeoutError:
        print(f"# {watchers} watchers: only {len(ready)} ready; errors {errors}", flush=True)
        raise
    names = iter(range(pods))
    rng = random.Random(watchers)
    cpu0 = cpu_seconds(server_pid)
    began = time.perf_counter()

    async def create() -> None:
        for i in names:
            name = f"{tag}-p{i}"
            created_at[name] = time.perf_counter()
            await creator_stub.Create(api_pb2.CreateRequest(object=pod(name, f"{tag}-n{rng.randrange(watchers)}")))

    await asyncio.gather(*(create() for _ in range(creators)))
    elapsed = time.perf_counter() - began
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(all_in.wait(), 15)
    cpu = cpu_seconds(server_pid) - cpu0
    for call in calls:
        call.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    for c in channels:
        await c.close()
    latencies = [delivered[n] - created_at[n] for n in delivered]
    if errors:
        print(f"# {watchers} watchers: watch errors {errors}", flush=True)
    return {
        "cpu_ms_per_pod": cpu * 1000 / pods,
        "pods_per_s": pods / elapsed,
        "p50": pct(latencies, 50),
        "p99": pct(latencies, 99),
        "missing": pods - len(delivered),
    }


async def main(opts: argparse.Namespace, port: int, server_pid: int) -> None:
    for _ in range(100):
        try:
            probe = api_pb2_grpc.ApiStub(transport.make_channel([f"127.0.0.1:{port}"]))
            await probe.Get(api_pb2.GetRequest(kind="ns", name="default"), timeout=1)
            break
        except grpc.aio.AioRpcError:
            await asyncio.sleep(0.1)
    ns = wrap(from_manifest({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "bench"}}))
    await probe.Create(api_pb2.CreateRequest(object=ns))
    rows = []
    for count in (int(x) for x in opts.watchers.split(",")):
        rows.append((count, await one_round(port, server_pid, count, opts.pods, opts.creators, f"w{count}")))
    print(f"# watch_fanout: {opts.pods} pods per row, {opts.creators} creators, one spec.nodeName watch per node")
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    print(f"{'watchers':>9}{'ms CPU/pod':>12}{'pods/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'missing':>9}{'CPU ratio':>11}")
    base = rows[0][1]["cpu_ms_per_pod"]
    for count, r in rows:
        print(
            f"{count:>9}{r['cpu_ms_per_pod']:>12.2f}{r['pods_per_s']:>9.0f}{r['p50']:>9.1f}{r['p99']:>9.1f}"
            f"{int(r['missing']):>9}{r['cpu_ms_per_pod'] / base:>11.2f}"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--watchers", default="10,1000,3000,5000")
    parser.add_argument("--pods", type=int, default=2000)
    parser.add_argument("--creators", type=int, default=8)
    options = parser.parse_args()
    etcd = EtcdCluster(1, fast=False).start()
    api_port = free_port()
    workdir = Path(tempfile.mkdtemp(prefix="navarch-bench-fanout-"))
    server = processes.apiserver(
        etcd.endpoints, f"127.0.0.1:{api_port}", workdir / "apiserver.log", "--max-watches", "0"
    ).start()
    assert server.proc is not None
    try:
        asyncio.run(main(options, api_port, server.proc.pid))
    finally:
        server.stop()
        etcd.stop()
