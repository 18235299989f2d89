"""Indexed Jobs' arithmetic: compressed index lists, progress from pods, and what to start or stop."""

from __future__ import annotations

from controlplane.api.pb import batch_pb2, core_pb2
from controlplane.controllers.jobindex import (
    FAILURE_COUNT,
    INDEX,
    format_indexes,
    parse_indexes,
    plan,
    progress,
)


def pod(
    name: str, index: int | str | None, phase: str = "Running", failures: int = 0, created: int = 0
) -> core_pb2.Pod:
    p = core_pb2.Pod()
    p.metadata.name = name
    p.metadata.uid = name
    p.metadata.creation_timestamp.seconds = created
    if index is not None:
        p.metadata.annotations[INDEX] = str(index)
    if failures:
        p.metadata.annotations[FAILURE_COUNT] = str(failures)
    p.status.phase = phase
    return p


def spec(completions: int, per_index: int | None = None) -> batch_pb2.JobSpec:
    s = batch_pb2.JobSpec(completions=completions, completion_mode="Indexed")
    s.template.spec.restart_policy = "Never"
    if per_index is not None:
        s.backoff_limit_per_index = per_index
    return s


def test_index_lists_compress_and_parse_back_within_bounds() -> None:
    assert format_indexes([5, 0, 1, 2, 7, 8]) == "0-2,5,7-8"
    assert format_indexes([]) == ""
    assert parse_indexes("0-2,5,7-8", 10) == {0, 1, 2, 5, 7, 8}
    assert parse_indexes("3-999999,x,,-1,4-2", 6) == {3, 4, 5}  # clipped; junk ignored; never 10^6 entries


def test_progress_keeps_recorded_successes_and_counts_failures_per_index() -> None:
    status = batch_pb2.JobStatus(completed_indexes="0")
    pods = [
        pod("a", 1, "Succeeded"),
        pod("b", 2, "Failed"),
        pod("c", 2, "Failed", failures=1),
        pod("d", 3),
        pod("e", None),  # no index: a stray
        pod("f", 99),  # out of range: a stray
    ]
    p = progress(spec(4, per_index=1), status, pods)
    assert p.succeeded == {0, 1}
    assert p.failures[2] == 2 and p.failed == {2}  # 2 failures > budget 1: given up
    assert set(p.active) == {3}
    assert [x.metadata.name for x in p.stray] == ["e", "f"]
    assert p.finished is False and p.pending == [3]


def test_plan_starts_lowest_pending_indexes_up_to_parallelism_and_removes_duplicates() -> None:
    pods = [pod("x1", 1, created=1), pod("x2", 1, created=2), pod("y", 4)]
    p = progress(spec(6), batch_pb2.JobStatus(completed_indexes="0"), pods)
    out = plan(p, parallelism=3)
    assert [d.metadata.name for d in out.delete] == ["x2"]  # the newer of two pods for index 1
    assert out.create == [2]  # 1 and 4 run; one more slot: the lowest free pending index
    assert plan(p, parallelism=3, blocked={2}).create == [3]  # index 2 waits out its back-off
    shrunk = plan(p, parallelism=1)
    assert {d.metadata.name for d in shrunk.delete} == {"x2", "y"} and shrunk.create == []


def test_pods_of_finished_indexes_are_stopped() -> None:
    pods = [pod("done", 0, "Succeeded"), pod("late-twin", 0), pod("given-up", 1, "Failed", failures=3), pod("z", 1)]
    p = progress(spec(2, per_index=2), batch_pb2.JobStatus(), pods)
    assert p.finished and p.failed == {1}
    assert {d.metadata.name for d in plan(p, parallelism=2).delete} == {"late-twin", "z"}
