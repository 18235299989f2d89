"""What the agent's usage sampling costs with N running containers, from cgroups and from /proc.

Starts N real container-like process trees (a supervisor ``sh`` with a ``sleep`` child each, the shape the
agent's shims have), then times ``UsageSampler.sample`` — the exact code the agent runs every
``--usage-interval`` (10 s) — in both modes: ``proc`` (no cgroups: one /proc scan per sample) and
``cgroup`` (each container in its own v1/v2 cgroup, as the limits hook makes them; skipped where no
hierarchy is writable). The bare operation beside it: one scan of /proc/*/stat. Prints CPU milliseconds
per sample (thread CPU time, median of the runs) and the share of one core at a 10 s interval.

    python bench/usage_sampling.py [--containers 50] [--samples 30]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

from nodeagent.cgroups import CgroupDriver, Limits
from nodeagent.usage import RunningContainer, UsageSampler, read_processes


def start_trees(
    n: int, cgroups: CgroupDriver | None, pod_uid: str
) -> tuple[list[subprocess.Popen[bytes]], list[RunningContainer]]:
    procs, running = [], []
    for i in range(n):
        name = f"c{i}"
        procs_files = cgroups.create(pod_uid, name, 0, Limits()) if cgroups is not None else []
        p = subprocess.Popen(["sh", "-c", "sleep 600 & wait"], start_new_session=True)
        for f in procs_files:
            Path(f).write_text(str(p.pid))
        procs.append(p)
        running.append(RunningContainer("bench", f"pod-{i}", pod_uid, name, 0, p.pid, 0))
    time.sleep(0.5)
    stats = read_processes()
    return procs, [
        RunningContainer(c.pod_namespace, c.pod_name, c.pod_uid, c.name, 0, c.shim_pid, stats[c.shim_pid].start)
        for c in running
    ]


def measure(sampler: UsageSampler, running: list[RunningContainer], samples: int) -> list[float]:
    costs = []
    for _ in range(samples):
        started = time.thread_time()
        sampler.sample(running)
        costs.append((time.thread_time() - started) * 1000)
    return costs


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--containers", type=int, default=50)
    parser.add_argument("--samples", type=int, default=30)
    opts = parser.parse_args()
    n = opts.containers
    print(f"machine: {os.cpu_count()} cores, {platform.machine()}, Python {platform.python_version()}")
    bare = []
    for _ in range(opts.samples):
        started = time.thread_time()
        read_processes()
        bare.append((time.thread_time() - started) * 1000)
    print(f"processes on this host: {len(read_processes())}")
    print(f"bare /proc scan: {statistics.median(bare):.2f} ms CPU")
    modes: list[tuple[str, CgroupDriver | None]] = [("proc", None)]
    driver = CgroupDriver.detect(f"bench-{uuid.uuid4().hex[:6]}")
    if driver is not None:
        modes.append((f"cgroup ({driver.name})", driver))
    with tempfile.TemporaryDirectory() as data:
        for label, cg in modes:
            uid = uuid.uuid4().hex
            procs, running = start_trees(n, cg, uid)
            try:
                sampler = UsageSampler(list, cg, Path(data))  # measure() hands it the containers
                costs = measure(sampler, running, opts.samples)
                last = sampler.latest if sampler.latest is not None else sampler.sample(running)
                seen = sum(len(p.containers) for p in last.pods)
            finally:
                for p in procs:
                    os.killpg(p.pid, 9)  # the tree: its own session and process group
                for p in procs:
                    p.wait()
                if cg is not None:
                    time.sleep(0.2)
                    cg.remove_all()
            median = statistics.median(costs)
            print(
                f"{label}: {n} containers ({seen} reported), {median:.2f} ms CPU per sample "
                f"(p90 {sorted(costs)[int(len(costs) * 0.9)]:.2f}), {median / 10_000 * 100:.3f} % of a core at 10 s, "
                f"{median / statistics.median(bare):.1f}x the bare /proc scan"
            )


if __name__ == "__main__":
    main()
