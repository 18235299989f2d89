"""The Node's conditions from one sample of the host: Ready and the three pressure conditions.

``sample_host`` reads the host; ``node_conditions`` is pure (thresholds, reasons, and the rule that a
condition's ``lastTransitionTime`` moves only when its status changes, as the kubelet's does).

Thresholds (Kubernetes' kubelet defaults for hard eviction, where it has one):

- MemoryPressure: available memory below 5 % of the total (``memory.available``);
- DiskPressure: free space on the data directory's filesystem below 10 % (``nodefs.available``);
- PIDPressure: more than 90 % of ``pid_max`` processes in use.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from google.protobuf.timestamp_pb2 import Timestamp

from controlplane.api.pb import meta_pb2

MEMORY_AVAILABLE_MIN = 0.05
DISK_FREE_MIN = 0.10
PIDS_USED_MAX = 0.90


@dataclass(frozen=True)
class HostSample:
    """What the conditions are computed from (bytes and process counts)."""

    mem_total: int
    mem_available: int
    disk_total: int
    disk_free: int
    pids: int
    pid_max: int


def meminfo() -> dict[str, int]:
    """/proc/meminfo in bytes (empty if unreadable)."""
    out: dict[str, int] = {}
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            key, _, rest = line.partition(":")
            out[key] = int(rest.split()[0]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return out


def _pid_max() -> int:
    try:
        return int(Path("/proc/sys/kernel/pid_max").read_text().strip())
    except (OSError, ValueError):
        return 4194304


def sample_host(data_dir: Path) -> HostSample:
    """Measure the host now."""
    mem = meminfo()
    disk = shutil.disk_usage(data_dir)
    pids = sum(1 for p in Path("/proc").iterdir() if p.name.isdigit())
    return HostSample(mem.get("MemTotal", 0), mem.get("MemAvailable", 0), disk.total, disk.free, pids, _pid_max())


def _condition(kind: str, healthy: bool, reason_ok: str, reason_bad: str, message: str) -> meta_pb2.Condition:
    # Pressure conditions are True when there IS pressure; Ready is True when ready.
    status = ("True" if healthy else "False") if kind == "Ready" else ("False" if healthy else "True")
    return meta_pb2.Condition(type=kind, status=status, reason=reason_ok if healthy else reason_bad, message=message)


def node_conditions(
    sample: HostSample, data_dir: str, stamp: Timestamp, previous: Sequence[meta_pb2.Condition] = ()
) -> list[meta_pb2.Condition]:
    """Ready and the pressure conditions for ``sample``, probed at ``stamp``; a condition whose status is the
    same as in ``previous`` keeps its ``lastTransitionTime``."""
    mem_ok = not sample.mem_total or sample.mem_available / sample.mem_total >= MEMORY_AVAILABLE_MIN
    disk_ok = not sample.disk_total or sample.disk_free / sample.disk_total >= DISK_FREE_MIN
    pid_ok = not sample.pid_max or sample.pids <= PIDS_USED_MAX * sample.pid_max
    out = [
        _condition("Ready", True, "AgentReady", "AgentNotReady", "navarch-agent is posting ready status"),
        _condition(
            "MemoryPressure",
            mem_ok,
            "AgentHasSufficientMemory",
            "AgentHasInsufficientMemory",
            f"{sample.mem_available // 2**20} MiB of {sample.mem_total // 2**20} MiB available",
        ),
        _condition(
            "DiskPressure",
            disk_ok,
            "AgentHasNoDiskPressure",
            "AgentHasDiskPressure",
            f"{sample.disk_free // 2**20} MiB of {sample.disk_total // 2**20} MiB free in {data_dir}",
        ),
        _condition(
            "PIDPressure",
            pid_ok,
            "AgentHasSufficientPID",
            "AgentHasInsufficientPID",
            f"{sample.pids} processes of {sample.pid_max}",
        ),
    ]
    before = {c.type: c for c in previous}
    for c in out:
        c.last_probe_time.CopyFrom(stamp)
        old = before.get(c.type)
        if old is not None and old.status == c.status and old.HasField("last_transition_time"):
            c.last_transition_time.CopyFrom(old.last_transition_time)
        else:
            c.last_transition_time.CopyFrom(stamp)
    return out
