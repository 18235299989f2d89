"""What the node and each container use, sampled every ``interval`` seconds for ``navarch top``, the
autoscaler and ``/metrics``.

Per container: CPU in cores (the rate between two samples of cumulative CPU time), working set and resident
memory. From the instance's cgroup where limits are enforced with cgroups; otherwise from ``/proc``, summing
the container's process tree (every descendant of its supervisor, which is their subreaper, so daemons that
left their process group are still counted) — so ``rlimit`` and no enforcement report too. The node: CPU
from ``/proc/stat``, memory as MemTotal - MemAvailable, and the file system of the data directory.

Guarantees: a sample reads only kernel files (``/proc``, cgroupfs) and never follows a path a workload can
change; a process is counted for a container only if its supervisor's pid still has the recorded start time
(a reused pid is not the container); the first sample of a container reports memory and no CPU (a rate needs
two); the latest sample is kept, older ones are not.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from google.protobuf.timestamp_pb2 import Timestamp

from controlplane.api.pb import metrics_pb2
from nodeagent.cgroups import CgroupDriver

log = logging.getLogger(__name__)

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
DEFAULT_INTERVAL = 10.0


@dataclass(frozen=True)
class Cumulative:
    """One reading of a counter that only grows (CPU seconds) at a monotonic time."""

    cpu_seconds: float
    at: float


def cores(prev: Cumulative | None, cur: Cumulative) -> float | None:
    """Average cores used between two readings; None without an earlier one, or when the counter went
    backwards (a new instance) or no time passed."""
    if prev is None or cur.at <= prev.at or cur.cpu_seconds < prev.cpu_seconds:
        return None
    return (cur.cpu_seconds - prev.cpu_seconds) / (cur.at - prev.at)


@dataclass(frozen=True)
class ContainerUsage:
    """One container's usage in the latest sample."""

    name: str
    cpu_cores: float | None
    """None on a container's first sample."""
    memory_working_set_bytes: int
    memory_rss_bytes: int
    source: str
    """``cgroup`` or ``proc``."""


@dataclass(frozen=True)
class PodUsage:
    """One pod's containers in the latest sample."""

    namespace: str
    name: str
    uid: str
    containers: list[ContainerUsage]


@dataclass(frozen=True)
class NodeUsage:
    """The whole node in one sample."""

    timestamp: float
    """Wall-clock time of the sample (seconds since the epoch)."""
    window: float
    """Seconds the CPU rates average over."""
    cpu_cores: float | None
    memory_working_set_bytes: int
    fs_used_bytes: int
    fs_capacity_bytes: int
    pods: list[PodUsage] = field(default_factory=list)


@dataclass(frozen=True)
class RunningContainer:
    """What the sampler needs to know of one running container instance."""

    pod_namespace: str
    pod_name: str
    pod_uid: str
    name: str
    instance: int
    shim_pid: int
    shim_start: int


@dataclass(frozen=True)
class ProcStat:
    """The fields of ``/proc/<pid>/stat`` the sampler uses."""

    ppid: int
    start: int
    cpu_ticks: int
    """utime + stime + cutime + cstime: its own CPU and that of the children it reaped."""
    rss_pages: int


def parse_stat(text: str) -> ProcStat | None:
    """``/proc/<pid>/stat`` (the command name may hold spaces and parentheses: fields follow the last ')')."""
    _, sep, rest = text.rpartition(")")
    if not sep:
        return None
    f = rest.split()
    try:
        # f[0] is field 3 (state): ppid is field 4, utime..cstime 14-17, starttime 22, rss 24.
        return ProcStat(int(f[1]), int(f[19]), int(f[11]) + int(f[12]) + int(f[13]) + int(f[14]), int(f[21]))
    except (IndexError, ValueError):
        return None


def read_processes(proc: Path = Path("/proc")) -> dict[int, ProcStat]:
    """Every process's stat, by pid (those that vanish while read are skipped)."""
    out: dict[int, ProcStat] = {}
    for entry in os.scandir(proc):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"{entry.path}/stat") as f:
                stat = parse_stat(f.read())
        except OSError:
            continue
        if stat is not None:
            out[int(entry.name)] = stat
    return out


def descendants(root: int, processes: dict[int, ProcStat]) -> list[int]:
    """Every process below ``root`` (not ``root`` itself)."""
    children: dict[int, list[int]] = {}
    for pid, stat in processes.items():
        children.setdefault(stat.ppid, []).append(pid)
    out: list[int] = []
    stack = list(children.get(root, ()))
    while stack:
        pid = stack.pop()
        out.append(pid)
        stack.extend(children.get(pid, ()))
    return out


def node_cpu_seconds(stat_file: Path = Path("/proc/stat")) -> float:
    """CPU seconds the node spent not idle (all cores), from the ``cpu`` line."""
    for line in stat_file.read_text().splitlines():
        if line.startswith("cpu "):
            values = [int(v) for v in line.split()[1:]]
            idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
            busy = sum(values[:8]) - idle  # guest time is already counted in user
            return busy / CLOCK_TICKS
    return 0.0


def node_memory_working_set(meminfo_file: Path = Path("/proc/meminfo")) -> int:
    """MemTotal - MemAvailable, in bytes."""
    values: dict[str, int] = {}
    for line in meminfo_file.read_text().splitlines():
        key, _, rest = line.partition(":")
        parts = rest.split()
        if parts and parts[0].isdigit():
            values[key] = int(parts[0]) * 1024
    return max(0, values.get("MemTotal", 0) - values.get("MemAvailable", 0))


class UsageSampler:
    """Samples the node and its running containers; ``latest`` is the newest sample (None before the first).

    ``running`` lists the containers to sample; it is called on the event loop, the reading happens in a
    thread so a slow ``/proc`` never stalls the agent.
    """

    def __init__(
        self,
        running: Callable[[], Iterable[RunningContainer]],
        cgroups: CgroupDriver | None,
        data_dir: Path,
        *,
        interval: float = DEFAULT_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.running = running
        self.cgroups = cgroups
        self.data_dir = data_dir
        self.interval = interval
        self.clock = clock
        self.latest: NodeUsage | None = None
        self.on_sample: list[Callable[[NodeUsage], None]] = []
        """Called on the event loop with each new sample (the limits observer)."""
        self.sample_seconds = 0.0
        """CPU seconds the last sample cost this process (the sampler's own overhead)."""
        self._prev: dict[tuple[str, str, int], Cumulative] = {}
        self._prev_node: Cumulative | None = None

    async def run(self) -> None:
        """Sample every ``interval`` seconds until cancelled."""
        while True:
            containers = list(self.running())
            try:
                self.latest = await asyncio.to_thread(self.sample, containers)
            except OSError as err:
                log.warning("usage sample failed: %s", err)
            else:
                for callback in self.on_sample:
                    callback(self.latest)
            await asyncio.sleep(self.interval)

    def sample(self, containers: list[RunningContainer]) -> NodeUsage:
        """One sample now (blocking: reads kernel files)."""
        started_cpu = time.thread_time()
        now = self.clock()
        processes: dict[int, ProcStat] | None = None
        pods: dict[str, PodUsage] = {}
        seen: set[tuple[str, str, int]] = set()
        for c in containers:
            key = (c.pod_uid, c.name, c.instance)
            usage = self.cgroups.usage(c.pod_uid, c.name, c.instance) if self.cgroups is not None else None
            if usage is not None and usage.cpu_seconds is not None:
                reading, working_set, rss, source = (
                    usage.cpu_seconds,
                    usage.working_set_bytes,
                    usage.rss_bytes,
                    "cgroup",
                )
            else:
                if processes is None:
                    processes = read_processes()
                shim = processes.get(c.shim_pid)
                if shim is None or shim.start != c.shim_start:
                    continue  # gone, or its pid reused by another process
                tree = [processes[pid] for pid in descendants(c.shim_pid, processes)]
                reading = sum(p.cpu_ticks for p in tree) / CLOCK_TICKS
                rss = sum(p.rss_pages for p in tree) * PAGE_SIZE
                working_set, source = rss, "proc"
                if usage is not None:  # memory from the cgroup, CPU from the tree (no CPU accounting)
                    working_set, rss, source = usage.working_set_bytes, usage.rss_bytes, "cgroup"
            current = Cumulative(reading, now)
            seen.add(key)
            rate = cores(self._prev.get(key), current)
            self._prev[key] = current
            pod = pods.get(c.pod_uid)
            if pod is None:
                pod = pods[c.pod_uid] = PodUsage(c.pod_namespace, c.pod_name, c.pod_uid, [])
            pod.containers.append(ContainerUsage(c.name, rate, working_set, rss, source))
        for key in set(self._prev) - seen:
            del self._prev[key]
        node_now = Cumulative(node_cpu_seconds(), now)
        node_rate = cores(self._prev_node, node_now)
        window = now - self._prev_node.at if self._prev_node is not None else 0.0
        self._prev_node = node_now
        disk = shutil.disk_usage(self.data_dir)
        self.sample_seconds = time.thread_time() - started_cpu
        return NodeUsage(
            timestamp=time.time(),
            window=window,
            cpu_cores=node_rate,
            memory_working_set_bytes=node_memory_working_set(),
            fs_used_bytes=disk.used,
            fs_capacity_bytes=disk.total,
            pods=list(pods.values()),
        )


def cpu_quantity(cores_used: float) -> str:
    """Cores as metrics-server writes them: nanocores (``123456789n``)."""
    return f"{max(0, round(cores_used * 1e9))}n"


def memory_quantity(n: int) -> str:
    """Bytes as a quantity in Ki (``524288Ki``)."""
    return f"{max(0, n) // 1024}Ki"


def to_report(node_name: str, usage: NodeUsage) -> metrics_pb2.UsageReport:
    """The sample as the Agent.Usage answer (metrics.k8s.io objects; CPU missing until a rate is known)."""
    stamp = Timestamp()
    stamp.FromNanoseconds(int(usage.timestamp * 1e9))
    window = f"{usage.window:.3f}s"
    node = metrics_pb2.NodeMetrics(api_version="metrics.k8s.io/v1beta1", kind="NodeMetrics", window=window)
    node.metadata.name = node_name
    node.timestamp.CopyFrom(stamp)
    if usage.cpu_cores is not None:
        node.usage["cpu"] = cpu_quantity(usage.cpu_cores)
    node.usage["memory"] = memory_quantity(usage.memory_working_set_bytes)
    node.usage["ephemeral-storage"] = memory_quantity(usage.fs_used_bytes)
    node.capacity["ephemeral-storage"] = memory_quantity(usage.fs_capacity_bytes)
    report = metrics_pb2.UsageReport(node=node)
    for pod in usage.pods:
        pm = report.pods.add(api_version="metrics.k8s.io/v1beta1", kind="PodMetrics", window=window)
        pm.metadata.namespace, pm.metadata.name, pm.metadata.uid = pod.namespace, pod.name, pod.uid
        pm.timestamp.CopyFrom(stamp)
        for c in pod.containers:
            cm = pm.containers.add(name=c.name, source=c.source)
            if c.cpu_cores is not None:
                cm.usage["cpu"] = cpu_quantity(c.cpu_cores)
            cm.usage["memory"] = memory_quantity(c.memory_working_set_bytes)
            cm.usage["memory-rss"] = memory_quantity(c.memory_rss_bytes)
    return report
