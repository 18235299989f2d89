"""Resource limits through cgroups: v2 if its memory controller is available, else v1 (memory and cpu, and
cpuacct where it is mounted apart, for usage accounting).

Each container instance gets its own cgroup, ``navarch/<node>/<pod uid>/<container>.<instance>``, under
every hierarchy used, so that its OOM-kill counter starts at zero and a finished instance's group can be
removed. The shim joins the groups (writing ``cgroup.procs``) before it starts the workload, which then
inherits them. Where no cgroup hierarchy is writable the agent falls back to ``setrlimit`` for memory.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

CPU_PERIOD_US = 100_000
"""CFS period: a limit of N cores is a quota of N * period per period."""


@dataclass(frozen=True)
class Limits:
    """What to enforce for one container (0: no limit)."""

    memory_bytes: int = 0
    cpu_millicores: int = 0
    cpu_request_millicores: int = 0


@dataclass(frozen=True)
class CgroupUsage:
    """Cumulative CPU and current memory of one container instance's group."""

    cpu_seconds: float | None
    """None where the hierarchy has no CPU accounting (v1 without cpuacct beside cpu)."""
    working_set_bytes: int
    """Usage minus inactive file cache: what the kernel cannot drop under pressure (kubelet's figure)."""
    rss_bytes: int


def _keyed(path: Path) -> dict[str, int]:
    """A ``key value`` per line file (memory.stat, cpu.stat) as integers."""
    out: dict[str, int] = {}
    for line in path.read_text().splitlines():
        key, _, value = line.partition(" ")
        if value.strip().isdigit():
            out[key] = int(value)
    return out


def _mounts(mounts_file: str = "/proc/self/mounts") -> list[tuple[str, str, set[str]]]:
    out: list[tuple[str, str, set[str]]] = []
    try:
        text = Path(mounts_file).read_text()
    except OSError:
        return out
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 4 and parts[2] in ("cgroup", "cgroup2"):
            out.append((parts[1], parts[2], set(parts[3].split(","))))
    return out


def _writable(path: Path) -> bool:
    return path.is_dir() and os.access(path, os.W_OK)


class CgroupDriver:
    """Creates, limits, inspects and removes container cgroups on one host."""

    def __init__(self, version: int, roots: dict[str, Path], prefix: str) -> None:
        self.version = version
        self.roots = roots  # controller -> hierarchy mount point ("" -> the v2 root)
        self.prefix = prefix

    @property
    def name(self) -> str:
        """The enforcement as reported in pod status."""
        return f"cgroup-v{self.version}"

    @classmethod
    def detect(cls, node_name: str, mounts_file: str = "/proc/self/mounts") -> CgroupDriver | None:
        """The best writable cgroup setup on this host, or None."""
        mounts = _mounts(mounts_file)
        prefix = f"navarch/{node_name}"
        for point, fstype, _ in mounts:
            root = Path(point)
            if fstype == "cgroup2" and _writable(root):
                controllers = set((root / "cgroup.controllers").read_text().split()) if root.exists() else set()
                if "memory" in controllers:
                    return cls(2, {"": root}, prefix)
        roots: dict[str, Path] = {}
        for point, fstype, options in mounts:
            if fstype != "cgroup":
                continue
            for controller in ("memory", "cpu", "cpuacct"):
                if controller in options and controller not in roots and _writable(Path(point)):
                    if controller == "cpuacct" and roots.get("cpu") == Path(point):
                        continue  # co-mounted with cpu ("cpu,cpuacct"): one group there serves both
                    roots[controller] = Path(point)
        if "memory" in roots:
            return cls(1, roots, prefix)
        return None

    # ------------------------------------------------------------ groups

    def _dirs(self, pod_uid: str, container: str, instance: int) -> dict[str, Path]:
        rel = f"{self.prefix}/{pod_uid}/{container}.{instance}"
        return {controller: root / rel for controller, root in self.roots.items()}

    def _enable_v2_controllers(self, leaf: Path) -> None:
        # Every ancestor below the root must delegate memory and cpu to its children.
        root = self.roots[""]
        available = set((root / "cgroup.controllers").read_text().split())
        wanted = " ".join(f"+{c}" for c in ("memory", "cpu") if c in available)
        node = root
        for part in leaf.relative_to(root).parts[:-1]:
            with contextlib.suppress(OSError):
                (node / "cgroup.subtree_control").write_text(wanted)
            node = node / part
        with contextlib.suppress(OSError):
            (node / "cgroup.subtree_control").write_text(wanted)

    def create(self, pod_uid: str, container: str, instance: int, limits: Limits) -> list[str]:
        """Create the instance's groups with their limits; returns the ``cgroup.procs`` files the shim joins."""
        procs: list[str] = []
        for controller, path in self._dirs(pod_uid, container, instance).items():
            path.mkdir(parents=True, exist_ok=True)
            if self.version == 2:
                self._enable_v2_controllers(path)
                if limits.memory_bytes:
                    (path / "memory.max").write_text(str(limits.memory_bytes))
                    with contextlib.suppress(OSError):
                        (path / "memory.swap.max").write_text("0")
                if limits.cpu_millicores:
                    quota = limits.cpu_millicores * CPU_PERIOD_US // 1000
                    with contextlib.suppress(OSError):
                        (path / "cpu.max").write_text(f"{quota} {CPU_PERIOD_US}")
                if limits.cpu_request_millicores:
                    # cgroup v2 weight 1..10000; Kubernetes maps 1 core of request to ~39 (shares 1024).
                    shares = max(2, limits.cpu_request_millicores * 1024 // 1000)
                    weight = 1 + ((shares - 2) * 9999) // 262142
                    with contextlib.suppress(OSError):
                        (path / "cpu.weight").write_text(str(weight))
            elif controller == "memory" and limits.memory_bytes:
                (path / "memory.limit_in_bytes").write_text(str(limits.memory_bytes))
                # Without a swap limit a "limited" process would just swap; not every kernel accounts swap.
                with contextlib.suppress(OSError):
                    (path / "memory.memsw.limit_in_bytes").write_text(str(limits.memory_bytes))
            elif controller == "cpu":
                if limits.cpu_millicores:
                    (path / "cpu.cfs_period_us").write_text(str(CPU_PERIOD_US))
                    (path / "cpu.cfs_quota_us").write_text(str(limits.cpu_millicores * CPU_PERIOD_US // 1000))
                if limits.cpu_request_millicores:
                    (path / "cpu.shares").write_text(str(max(2, limits.cpu_request_millicores * 1024 // 1000)))
            procs.append(str(path / "cgroup.procs"))
        return procs

    def oom_killed(self, pod_uid: str, container: str, instance: int) -> bool:
        """Whether the kernel OOM-killed a process of this instance."""
        dirs = self._dirs(pod_uid, container, instance)
        path = dirs.get("") or dirs.get("memory")
        if path is None:
            return False
        name = "memory.events" if self.version == 2 else "memory.oom_control"
        try:
            text = (path / name).read_text()
        except OSError:
            return False
        for line in text.splitlines():
            key, _, value = line.partition(" ")
            if key == "oom_kill" and value.strip().isdigit():
                return int(value) > 0
        return False

    def usage(self, pod_uid: str, container: str, instance: int) -> CgroupUsage | None:
        """What an instance's group has used: CPU seconds (None without CPU accounting), working set and
        resident anonymous memory in bytes. None when the group does not exist (any more)."""
        dirs = self._dirs(pod_uid, container, instance)
        memory = dirs.get("") or dirs.get("memory")
        if memory is None:
            return None
        try:
            stat = _keyed(memory / "memory.stat")
            if self.version == 2:
                current = int((memory / "memory.current").read_text())
                inactive, rss = stat.get("inactive_file", 0), stat.get("anon", 0)
            else:
                current = int((memory / "memory.usage_in_bytes").read_text())
                inactive, rss = stat.get("total_inactive_file", 0), stat.get("total_rss", 0)
        except (OSError, ValueError):
            return None
        cpu: float | None = None
        try:
            if self.version == 2:
                cpu = _keyed(memory / "cpu.stat").get("usage_usec", 0) / 1e6
            else:
                accounting = dirs.get("cpuacct") or dirs.get("cpu")
                if accounting is not None:
                    cpu = int((accounting / "cpuacct.usage").read_text()) / 1e9
        except (OSError, ValueError):
            cpu = None
        return CgroupUsage(cpu, max(0, current - inactive), rss)

    def procs_files(self, pod_uid: str, container: str, instance: int) -> list[str]:
        """The ``cgroup.procs`` files of an instance's existing groups (for processes that join it later)."""
        return [
            str(path / "cgroup.procs")
            for path in self._dirs(pod_uid, container, instance).values()
            if (path / "cgroup.procs").exists()
        ]

    def kill_instance(self, pod_uid: str, container: str, instance: int) -> int:
        """SIGKILL every process left in an instance's groups (a workload that daemonised out of its process
        group, with ``setsid``, is still in its cgroup); how many were signalled. v2's ``cgroup.kill`` where
        there is one, else each pid of ``cgroup.procs``, until the groups are empty (bounded)."""
        signalled = 0
        for path in self._dirs(pod_uid, container, instance).values():
            kill_file = path / "cgroup.kill"
            if self.version == 2 and kill_file.exists():
                with contextlib.suppress(OSError):
                    kill_file.write_text("1")
                    signalled += 1
                continue
            for _round in range(20):  # a process may fork while we kill: look again until empty
                try:
                    pids = [int(p) for p in (path / "cgroup.procs").read_text().split()]
                except (OSError, ValueError):
                    break
                if not pids:
                    break
                for pid in pids:
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.kill(pid, signal.SIGKILL)
                        signalled += 1
                time.sleep(0.01)
        return signalled

    def remove_instance(self, pod_uid: str, container: str, instance: int) -> None:
        """Remove a finished instance's groups (they are empty once its processes are gone)."""
        for path in self._dirs(pod_uid, container, instance).values():
            with contextlib.suppress(OSError):
                path.rmdir()

    def remove_pod(self, pod_uid: str) -> None:
        """Remove every group of a pod whose processes are gone."""
        for root in self.roots.values():
            pod_dir = root / self.prefix / pod_uid
            if not pod_dir.is_dir():
                continue
            for child in pod_dir.iterdir():
                if child.is_dir():
                    with contextlib.suppress(OSError):
                        child.rmdir()
            with contextlib.suppress(OSError):
                pod_dir.rmdir()

    def remove_all(self) -> None:
        """Remove every (empty) group of this node, deepest first."""
        for root in self.roots.values():
            base = root / self.prefix
            if not base.is_dir():
                continue
            for path in sorted((p for p in base.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True):
                with contextlib.suppress(OSError):
                    path.rmdir()
            with contextlib.suppress(OSError):
                base.rmdir()
