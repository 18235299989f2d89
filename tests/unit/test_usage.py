"""The agent's usage arithmetic and sampler, with fake kernel readings (no processes, no cgroups)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from nodeagent import usage
from nodeagent.cgroups import CgroupUsage
from nodeagent.usage import Cumulative, ProcStat, RunningContainer, UsageSampler, cores, descendants, parse_stat

pytestmark = pytest.mark.unit


def test_cores_is_the_rate_between_two_readings() -> None:
    assert cores(Cumulative(10.0, 100.0), Cumulative(15.0, 110.0)) == pytest.approx(0.5)
    assert cores(None, Cumulative(15.0, 110.0)) is None
    # A counter that went backwards is a new instance, not negative use; no time passed: no rate.
    assert cores(Cumulative(15.0, 100.0), Cumulative(1.0, 110.0)) is None
    assert cores(Cumulative(1.0, 100.0), Cumulative(2.0, 100.0)) is None


def test_parse_stat_reads_fields_after_a_command_name_with_spaces_and_parentheses() -> None:
    # pid (comm) state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime cutime cstime
    # priority nice threads itrealvalue starttime vsize rss
    line = "42 (a (b) c) S 7 42 42 0 -1 0 0 0 0 0 100 50 20 5 20 0 1 0 9999 123456 300 rest"
    stat = parse_stat(line)
    assert stat == ProcStat(ppid=7, start=9999, cpu_ticks=175, rss_pages=300)
    assert parse_stat("garbage") is None
    assert parse_stat("1 (x) S 1") is None


def test_descendants_walks_the_whole_tree_but_not_the_root() -> None:
    procs = {
        10: ProcStat(1, 0, 0, 0),
        11: ProcStat(10, 0, 0, 0),
        12: ProcStat(11, 0, 0, 0),
        13: ProcStat(10, 0, 0, 0),
        20: ProcStat(1, 0, 0, 0),
    }
    assert sorted(descendants(10, procs)) == [11, 12, 13]
    assert descendants(99, procs) == []


def test_node_memory_is_total_minus_available(tmp_path: Path) -> None:
    f = tmp_path / "meminfo"
    f.write_text("MemTotal:       1000 kB\nMemFree:         100 kB\nMemAvailable:    400 kB\n")
    assert usage.node_memory_working_set(f) == 600 * 1024


def test_node_cpu_counts_every_state_but_idle_and_iowait(tmp_path: Path) -> None:
    f = tmp_path / "stat"
    ticks = usage.CLOCK_TICKS
    # user nice system idle iowait irq softirq steal
    f.write_text(f"cpu  {ticks} 0 {ticks} {50 * ticks} {ticks} 0 0 0 0 0\ncpu0 1 2 3 4\n")
    assert usage.node_cpu_seconds(f) == pytest.approx(2.0)


class FakeCgroups:
    def __init__(self) -> None:
        self.readings: dict[tuple[str, str, int], CgroupUsage] = {}

    def usage(self, pod_uid: str, container: str, instance: int) -> CgroupUsage | None:
        return self.readings.get((pod_uid, container, instance))


def test_sampler_reports_memory_at_once_and_cpu_from_the_second_sample(tmp_path: Path) -> None:
    now = [100.0]
    cg = FakeCgroups()
    c = RunningContainer("ns", "p", "uid-1", "main", 0, shim_pid=1, shim_start=1)
    sampler = UsageSampler(lambda: [c], cg, tmp_path, clock=lambda: now[0])  # type: ignore[arg-type]
    cg.readings[("uid-1", "main", 0)] = CgroupUsage(5.0, 200 << 20, 190 << 20)
    first = sampler.sample([c])
    [pod] = first.pods
    [ctr] = pod.containers
    assert (ctr.cpu_cores, ctr.memory_working_set_bytes, ctr.source) == (None, 200 << 20, "cgroup")
    now[0] = 110.0
    cg.readings[("uid-1", "main", 0)] = CgroupUsage(15.0, 210 << 20, 200 << 20)
    [ctr] = sampler.sample([c]).pods[0].containers
    assert ctr.cpu_cores == pytest.approx(1.0)
    assert ctr.memory_working_set_bytes == 210 << 20


def test_sampler_falls_back_to_the_process_tree_and_skips_a_reused_pid(tmp_path: Path) -> None:
    # This test process is the "supervisor": its children are what the tree sums.
    me = os.getpid()
    start = usage.read_processes()[me].start
    ours = RunningContainer("ns", "p", "uid-1", "main", 0, shim_pid=me, shim_start=start)
    reused = RunningContainer("ns", "q", "uid-2", "main", 0, shim_pid=me, shim_start=start + 1)
    sampler = UsageSampler(lambda: [], None, tmp_path)
    got = sampler.sample([ours, reused])
    assert [p.name for p in got.pods] == ["p"]  # the pid whose start time differs is not that container
    assert got.pods[0].containers[0].source == "proc"


def test_report_writes_kubernetes_quantities(tmp_path: Path) -> None:
    sample = usage.NodeUsage(
        timestamp=1_800_000_000.5,
        window=10.0,
        cpu_cores=1.25,
        memory_working_set_bytes=3 << 30,
        fs_used_bytes=1 << 30,
        fs_capacity_bytes=4 << 30,
        pods=[usage.PodUsage("ns", "p", "u", [usage.ContainerUsage("main", None, 1 << 20, 1 << 20, "proc")])],
    )
    report = usage.to_report("n1", sample)
    assert report.node.usage["cpu"] == "1250000000n"
    assert report.node.usage["memory"] == f"{3 << 20}Ki"
    assert report.node.window == "10.000s"
    [pm] = report.pods
    assert "cpu" not in pm.containers[0].usage  # no rate yet: absent, not zero
    assert pm.containers[0].usage["memory"] == "1024Ki"
