"""Raw etcd put/get throughput from Python, then API server Create/Get/List throughput and latency.

Starts its own etcd (one member, fsync on) and a ``navarch-apiserver`` process, runs N concurrent
clients for each operation, and prints ops/s, p50 and p99 per operation and the API/raw ratio.
Nothing is asserted: record the figures in docs/performance.md.

    python bench/api_throughput.py [--clients 16] [--ops 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from controlplane import transport
from controlplane.api.objects import from_manifest, wrap
from controlplane.api.pb import api_pb2, api_pb2_grpc
from controlplane.launcher.etcd import EtcdCluster, free_port
from controlplane.storage import EtcdClient, EtcdConfig

Op = Callable[[int], Awaitable[object]]


async def run(op: Op, ops: int, clients: int) -> tuple[float, list[float]]:
    """Run ``ops`` calls of ``op(i)`` over ``clients`` concurrent workers; returns (ops/s, latencies)."""
    latencies: list[float] = []
    counter = iter(range(ops))

    async def worker() -> None:
        for i in counter:
            start = time.perf_counter()
            await op(i)
            latencies.append(time.perf_counter() - start)

    began = time.perf_counter()
    async with asyncio.TaskGroup() as tg:
        for _ in range(clients):
            tg.create_task(worker())
    return ops / (time.perf_counter() - began), latencies


def pct(values: list[float], q: float) -> float:
    """The q-th percentile in milliseconds."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))] * 1000


def row(name: str, rate: float, lat: list[float]) -> str:
    return f"{name:<28}{rate:>10.0f}{pct(lat, 50):>10.2f}{pct(lat, 99):>10.2f}"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--ops", type=int, default=2000)
    parser.add_argument("--list-objects", type=int, default=100, help="objects in the namespace that List returns")
    parser.add_argument("--crowd", type=int, default=10_000, help="ConfigMaps in other namespaces for the index rows")
    return parser.parse_args()


def start_cluster() -> tuple[EtcdCluster, subprocess.Popen[bytes], int]:
    """One etcd member (fsync on) and a navarch-apiserver process on a free port."""
    etcd = EtcdCluster(1, fast=False).start()
    port = free_port()
    server = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "navarch-apiserver"),
            "--etcd-servers",
            etcd.endpoints[0],
            "--listen",
            f"127.0.0.1:{port}",
            "--insecure",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return etcd, server, port


async def main(opts: argparse.Namespace, etcd: EtcdCluster, port: int) -> None:
    raw = EtcdClient(EtcdConfig(endpoints=etcd.endpoints))
    await raw.connect()
    channel = transport.make_channel([f"127.0.0.1:{port}"])
    api = api_pb2_grpc.ApiStub(channel)
    try:
        for _ in range(100):
            try:
                await api.Get(api_pb2.GetRequest(kind="ns", name="default"), timeout=1)
                break
            except Exception:
                await asyncio.sleep(0.1)
        value = b"x" * 300  # about the size of a small ConfigMap
        results: dict[str, tuple[float, list[float]]] = {}
        results["etcd put"] = await run(lambda i: raw.kv.put(f"/bench/k{i}", value), opts.ops, opts.clients)
        results["etcd get"] = await run(lambda i: raw.kv.get(f"/bench/k{i}"), opts.ops, opts.clients)

        def cm(i: int) -> api_pb2.Object:
            return wrap(
                from_manifest(
                    {
                        "apiVersion": "v1",
                        "kind": "ConfigMap",
                        "metadata": {"name": f"c{i}", "namespace": "default"},
                        "data": {"payload": "x" * 250},
                    }
                )
            )

        async def namespace(name: str) -> None:
            await api.Create(
                api_pb2.CreateRequest(
                    object=wrap(from_manifest({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}))
                )
            )

        def in_namespace(i: int, name: str) -> api_pb2.Object:
            obj = cm(i)
            obj.config_map.metadata.namespace = name
            return obj

        # A namespace of 10 ConfigMaps, listed while no other ConfigMap exists, then again with --crowd others
        # in another namespace: the watch cache's namespace index should make the two cost the same.
        await namespace("small")
        for i in range(10):
            await api.Create(api_pb2.CreateRequest(object=in_namespace(i, "small")))
        small_ops = max(opts.ops // 4, 100)

        async def list_small(i: int) -> object:
            return await api.List(api_pb2.ListRequest(kind="cm", namespace="small"))

        results["api List 10, kind alone"] = await run(list_small, small_ops, opts.clients)

        results["api Create"] = await run(
            lambda i: api.Create(api_pb2.CreateRequest(object=cm(i))), opts.ops, opts.clients
        )
        results["api Get"] = await run(
            lambda i: api.Get(api_pb2.GetRequest(kind="cm", namespace="default", name=f"c{i}")), opts.ops, opts.clients
        )
        await namespace("crowd")
        extra = max(opts.crowd - opts.ops, 0)
        await run(lambda i: api.Create(api_pb2.CreateRequest(object=in_namespace(i, "crowd"))), extra, opts.clients)
        results[f"api List 10, {opts.ops + extra} others"] = await run(list_small, small_ops, opts.clients)
        await namespace("listing")
        for i in range(opts.list_objects):
            obj = cm(i)
            obj.config_map.metadata.namespace = "listing"
            await api.Create(api_pb2.CreateRequest(object=obj))
        list_ops = max(opts.ops // 10, 50)
        results[f"api List ({opts.list_objects} objs)"] = await run(
            lambda i: api.List(api_pb2.ListRequest(kind="cm", namespace="listing")), list_ops, opts.clients
        )
        results[f"api List rv=0 ({opts.list_objects})"] = await run(
            lambda i: api.List(api_pb2.ListRequest(kind="cm", namespace="listing", resource_version="0")),
            list_ops,
            opts.clients,
        )
    finally:
        await channel.close()
        await raw.close()

    extra = max(opts.crowd - opts.ops, 0)
    list_rows = max(opts.ops // 10, 50)
    print(f"# api_throughput: {opts.clients} concurrent clients, {opts.ops} operations per row (List: {list_rows})")
    print(
        f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"etcd {'.'.join(map(str, etcd.version))} (fsync on)"
    )
    print(f"{'operation':<28}{'ops/s':>10}{'p50 ms':>10}{'p99 ms':>10}")
    for name, (rate, lat) in results.items():
        print(row(name, rate, lat))
    put, get = results["etcd put"][0], results["etcd get"][0]
    print(f"ratio API Create / etcd put: {results['api Create'][0] / put:.2f}")
    print(f"ratio API Get / etcd get:    {results['api Get'][0] / get:.2f}")
    alone = statistics.median(results["api List 10, kind alone"][1])
    crowded = statistics.median(results[f"api List 10, {opts.ops + extra} others"][1])
    print(f"median namespaced List, crowded / alone: {crowded / alone:.2f}")
    list_p50 = statistics.median(results[f"api List ({opts.list_objects} objs)"][1])
    print(f"median List latency / median Get latency: {list_p50 / statistics.median(results['api Get'][1]):.1f}")


if __name__ == "__main__":
    options = parse_args()
    cluster, apiserver, api_port = start_cluster()
    try:
        asyncio.run(main(options, cluster, api_port))
    finally:
        apiserver.terminate()
        apiserver.wait(timeout=15)
        cluster.stop()
