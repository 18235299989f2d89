"""The Node's pressure conditions from a host sample (nodeagent/pressure.py): each threshold on both sides,
and lastTransitionTime moving only when a condition's status changes (plausible bugs: a threshold compared
the wrong way round, so a full host reports no pressure; every write stamping a new transition time, so
``describe node`` can never say since when a node has been under pressure)."""

from __future__ import annotations

import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from nodeagent.pressure import HostSample, node_conditions

GiB = 2**30
HEALTHY = HostSample(
    mem_total=10 * GiB, mem_available=5 * GiB, disk_total=100 * GiB, disk_free=50 * GiB, pids=100, pid_max=1000
)


def at(seconds: int) -> Timestamp:
    return Timestamp(seconds=seconds)


def status(sample: HostSample) -> dict[str, str]:
    return {c.type: c.status for c in node_conditions(sample, "/data", at(1))}


def test_a_healthy_host_is_ready_without_pressure() -> None:
    assert status(HEALTHY) == {
        "Ready": "True",
        "MemoryPressure": "False",
        "DiskPressure": "False",
        "PIDPressure": "False",
    }


@pytest.mark.parametrize(
    ("change", "condition", "expected"),
    [
        ({"mem_available": GiB // 2 - 1}, "MemoryPressure", "True"),  # below 5 % of 10 GiB
        ({"mem_available": GiB // 2}, "MemoryPressure", "False"),  # exactly 5 %
        ({"disk_free": 10 * GiB - 1}, "DiskPressure", "True"),  # below 10 %
        ({"disk_free": 10 * GiB}, "DiskPressure", "False"),
        ({"pids": 901}, "PIDPressure", "True"),  # above 90 % of pid_max
        ({"pids": 900}, "PIDPressure", "False"),
    ],
)
def test_each_threshold_on_both_sides(change: dict[str, int], condition: str, expected: str) -> None:
    sample = HostSample(**{**HEALTHY.__dict__, **change})
    got = status(sample)
    assert got[condition] == expected
    assert got["Ready"] == "True"
    others = {k: v for k, v in got.items() if k not in (condition, "Ready")}
    assert set(others.values()) == {"False"}


def test_pressure_names_its_reason_and_figures() -> None:
    full = HostSample(**{**HEALTHY.__dict__, "disk_free": GiB})
    (disk,) = [c for c in node_conditions(full, "/var/lib/navarch", at(1)) if c.type == "DiskPressure"]
    assert disk.reason == "AgentHasDiskPressure"
    assert "1024 MiB of 102400 MiB free in /var/lib/navarch" in disk.message


def test_unknown_figures_are_not_pressure() -> None:
    # A host whose /proc could not be read (zeros) is not reported as under pressure.
    assert status(HostSample(0, 0, 0, 0, 0, 0))["MemoryPressure"] == "False"


def test_transition_time_moves_only_when_the_status_changes() -> None:
    first = node_conditions(HEALTHY, "/data", at(10))
    same = node_conditions(HEALTHY, "/data", at(20), first)
    assert {c.type: c.last_transition_time.seconds for c in same} == dict.fromkeys(
        ("Ready", "MemoryPressure", "DiskPressure", "PIDPressure"), 10
    )
    assert {c.last_probe_time.seconds for c in same} == {20}
    full = HostSample(**{**HEALTHY.__dict__, "disk_free": 0})
    changed = {c.type: c.last_transition_time.seconds for c in node_conditions(full, "/data", at(30), same)}
    assert changed == {"Ready": 10, "MemoryPressure": 10, "DiskPressure": 30, "PIDPressure": 10}
