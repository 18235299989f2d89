"""Where one Create's time goes in the API server: a sampling profile (py-spy) while clients create ConfigMaps.

Starts one etcd member (fsync on) and a ``navarch-apiserver`` process, measures raw etcd puts from Python,
then runs ``--clients`` concurrent Creators for ``--seconds`` while ``py-spy record`` samples the API server
(``pip install py-spy``; needs ptrace, e.g. root). Prints Creates per second and the ratio to raw puts, the
API server's CPU per Create, and the share of samples by what the innermost Navarch or library frame is
doing (self time, grouped), plus the top functions. Nothing is asserted: record it in docs/performance.md.

    python bench/create_profile.py [--clients 16] [--seconds 15]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import cpu_seconds, etcd_put_rate

from controlplane import transport
from controlplane.api.objects import from_manifest, wrap
from controlplane.api.pb import api_pb2, api_pb2_grpc
from controlplane.launcher import processes
from controlplane.launcher.etcd import EtcdCluster, free_port

GROUPS = [
    ("etcd client (etcd3aio, its gRPC calls)", ("etcd3aio",)),
    ("protobuf encode/decode, JSON", ("google/protobuf", "json/")),
    ("validation and defaults", ("controlplane/api/validation", "controlplane/api/defaults", "fieldvalidation")),
    ("registry and strategy", ("apiserver/registry", "apiserver/strategy", "apiserver/admission")),
    ("watch cache (apply, index, fan-out)", ("apiserver/watchcache", "apiserver/watchindex", "apiserver/cacheindex")),
    ("storage (keys, codec, leases, encryption)", ("controlplane/storage",)),
    ("request guard, authn/authz, audit", ("apiserver/guard", "apiserver/auth", "apiserver/rbac", "apiserver/audit")),
    ("gRPC server and asyncio loop", ("grpc/", "asyncio/", "selectors")),
]


def group_of(frame: str) -> str:
    for name, needles in GROUPS:
        if any(n in frame for n in needles):
            return name
    return "other"


def analyse(raw: Path) -> tuple[int, collections.Counter[str], collections.Counter[str]]:
    """(samples, samples by group of the leaf frame, samples by leaf function) from py-spy's raw output."""
    total = 0
    groups: collections.Counter[str] = collections.Counter()
    leaves: collections.Counter[str] = collections.Counter()
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        n = int(count)
        frames = stack.split(";")
        leaf = frames[-1]
        total += n
        groups[group_of(leaf)] += n
        leaves[leaf] += n
    return total, groups, leaves


async def creates(port: int, clients: int, seconds: float, tag: str) -> tuple[int, float]:
    channel = transport.make_channel([f"127.0.0.1:{port}"])
    api = api_pb2_grpc.ApiStub(channel)
    for _ in range(100):
        try:
            await api.Get(api_pb2.GetRequest(kind="ns", name="default"), timeout=1)
            break
        except Exception:
            await asyncio.sleep(0.1)
    count = 0
    stop = time.monotonic() + seconds

    async def creator(c: int) -> None:
        nonlocal count
        i = 0
        while time.monotonic() < stop:
            doc = {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": f"{tag}{c}-{i}", "namespace": "default"},
                "data": {"payload": "x" * 250},
            }
            await api.Create(api_pb2.CreateRequest(object=wrap(from_manifest(doc))))
            count += 1
            i += 1

    began = time.monotonic()
    await asyncio.gather(*(creator(c) for c in range(clients)))
    elapsed = time.monotonic() - began
    await channel.close()
    return count, elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--top", type=int, default=15)
    opts = parser.parse_args()
    spy = shutil.which("py-spy")
    if spy is None:
        sys.exit("py-spy not found: pip install py-spy")
    workdir = Path(tempfile.mkdtemp(prefix="navarch-bench-profile-"))
    etcd = EtcdCluster(1, fast=False).start()
    port = free_port()
    daemon = processes.apiserver(etcd.endpoints, f"127.0.0.1:{port}", workdir / "apiserver.log").start()
    assert daemon.proc is not None
    server = daemon.proc
    try:
        put_rate = asyncio.run(etcd_put_rate(etcd.endpoints))
        asyncio.run(creates(port, opts.clients, 2.0, "warm"))
        raw = workdir / "profile.txt"
        sampler = subprocess.Popen(
            [
                spy,
                "record",
                "-p",
                str(server.pid),
                "-d",
                str(int(opts.seconds)),
                "-r",
                "250",
                "-f",
                "raw",
                "-o",
                str(raw),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        cpu0 = cpu_seconds(server.pid)
        count, elapsed = asyncio.run(creates(port, opts.clients, opts.seconds, "c"))
        cpu = cpu_seconds(server.pid) - cpu0
        sampler.wait(timeout=60)
    finally:
        daemon.stop()
        etcd.stop()
    total, groups, leaves = analyse(raw)
    print(f"# create_profile: {opts.clients} clients, {opts.seconds:g}s; profile in {raw}")
    print(f"# {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, etcd fsync on")
    rate = count / elapsed
    print(f"Creates per second:                 {rate:8.0f}")
    print(f"raw etcd puts per second:           {put_rate:8.0f}")
    print(f"ratio Create / put:                 {rate / put_rate:8.3f}")
    print(f"API server CPU per Create:          {cpu / count * 1000:8.2f} ms")
    print(f"samples:                            {total:8d}")
    print("\n| where the API server's time goes (self time of the innermost frame) | share |\n|---|---:|")
    for name, n in groups.most_common():
        print(f"| {name} | {n / total:.0%} |")
    print(f"\ntop {opts.top} functions (self):")
    for leaf, n in leaves.most_common(opts.top):
        print(f"  {n / total:6.1%}  {leaf}")


if __name__ == "__main__":
    main()
