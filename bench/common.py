"""What the benchmarks share: process CPU and memory from /proc, percentiles, and raw etcd puts from Python."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

from controlplane.storage import EtcdClient, EtcdConfig

TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def rss_mib(pid: int) -> float:
    """Resident memory of a process, MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def pct(values: list[float], q: float) -> float:
    """The q-th percentile of seconds, in milliseconds (0 for no values)."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))] * 1000


async def etcd_put_rate(endpoints: list[str], ops: int = 4000, clients: int = 16) -> float:
    """Raw etcd puts per second from Python (the API server's own client library), ~600-byte values."""
    raw = EtcdClient(EtcdConfig(endpoints=endpoints))
    await raw.connect()
    value = b"x" * 600  # about a pod's encoded size
    counter = iter(range(ops))

    async def worker() -> None:
        for i in counter:
            await raw.kv.put(f"/bench-raw/k{i}", value)

    began = time.perf_counter()
    try:
        await asyncio.gather(*(worker() for _ in range(clients)))
    finally:
        await raw.close()
    return ops / (time.perf_counter() - began)
