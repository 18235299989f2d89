"""Indexed Jobs' arithmetic (``completionMode: Indexed``), as pure functions over a Job's pods.

Each pod of an Indexed Job carries its completion index (0 .. completions-1) in the annotation and label
``batch.kubernetes.io/job-completion-index`` and in ``JOB_COMPLETION_INDEX``; the Job is complete when every
index has a succeeded pod. With ``backoffLimitPerIndex`` each index has its own failure budget: an index
that fails more often than that is given up (``status.failedIndexes``) while the others go on, and the
Job fails once every index has succeeded or been given up, or sooner when more than ``maxFailedIndexes``
are given up.

An index's failures survive the deletion of its failed pods: each new pod records how many times its
index had failed before it (``batch.kubernetes.io/job-index-failure-count``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from controlplane.api.pb import batch_pb2, core_pb2

INDEX = "batch.kubernetes.io/job-completion-index"
FAILURE_COUNT = "batch.kubernetes.io/job-index-failure-count"
ENV = "JOB_COMPLETION_INDEX"

_RANGE = re.compile(r"^(\d{1,6})(?:-(\d{1,6}))?$")


def pod_index(pod: core_pb2.Pod, completions: int) -> int | None:
    """The pod's completion index, or ``None`` if it has none or one out of range."""
    text = pod.metadata.annotations.get(INDEX, "")
    if not text.isdigit() or len(text) > 6:
        return None
    value = int(text)
    return value if 0 <= value < completions else None


def format_indexes(indexes: Iterable[int]) -> str:
    """Kubernetes' compressed form: ``0-2,5,7-8``."""
    out: list[str] = []
    ordered = sorted(set(indexes))
    i = 0
    while i < len(ordered):
        j = i
        while j + 1 < len(ordered) and ordered[j + 1] == ordered[j] + 1:
            j += 1
        out.append(str(ordered[i]) if i == j else f"{ordered[i]}-{ordered[j]}")
        i = j + 1
    return ",".join(out)


def parse_indexes(text: str, completions: int) -> set[int]:
    """The indexes of a compressed list (those within ``completions``; malformed parts are ignored)."""
    out: set[int] = set()
    for part in text.split(","):
        m = _RANGE.match(part.strip())
        if not m:
            continue
        lo = int(m.group(1))
        hi = int(m.group(2)) if m.group(2) else lo
        out.update(range(max(0, lo), min(hi, completions - 1) + 1))
    return out


def _failure_count(pod: core_pb2.Pod) -> int:
    text = pod.metadata.annotations.get(FAILURE_COUNT, "0")
    return int(text) if text.isdigit() and len(text) < 7 else 0


@dataclass
class Progress:
    """Where an Indexed Job stands."""

    completions: int
    succeeded: set[int] = field(default_factory=set)
    failed: set[int] = field(default_factory=set)
    """Indexes given up (only with ``backoffLimitPerIndex``)."""
    failures: dict[int, int] = field(default_factory=dict)
    """Failures so far per index."""
    active: dict[int, list[core_pb2.Pod]] = field(default_factory=dict)
    stray: list[core_pb2.Pod] = field(default_factory=list)
    """Active pods with no valid index: to delete."""

    @property
    def pending(self) -> list[int]:
        """Indexes neither succeeded nor given up, lowest first."""
        done = self.succeeded | self.failed
        return [i for i in range(self.completions) if i not in done]

    @property
    def finished(self) -> bool:
        """Every index succeeded or was given up."""
        return len(self.succeeded | self.failed) >= self.completions


def progress(spec: batch_pb2.JobSpec, status: batch_pb2.JobStatus, pods: list[core_pb2.Pod]) -> Progress:
    """Succeeded, failed and active indexes from the pods and what the status already records (an index once
    recorded succeeded stays so, even if its pod is deleted)."""
    completions = spec.completions
    out = Progress(completions)
    out.succeeded = parse_indexes(status.completed_indexes, completions)
    out.failed = parse_indexes(status.failed_indexes, completions)
    for pod in pods:
        index = pod_index(pod, completions)
        phase = pod.status.phase
        terminating = pod.metadata.HasField("deletion_timestamp")
        if index is None:
            if phase not in ("Succeeded", "Failed") and not terminating:
                out.stray.append(pod)
            continue
        seen = _failure_count(pod) + (1 if phase == "Failed" else 0)
        if spec.template.spec.restart_policy == "OnFailure":
            seen += sum(c.restart_count for c in pod.status.container_statuses)
        out.failures[index] = max(out.failures.get(index, 0), seen)
        if phase == "Succeeded":
            out.succeeded.add(index)
        elif phase != "Failed" and not terminating:
            out.active.setdefault(index, []).append(pod)
    if spec.HasField("backoff_limit_per_index"):
        for index, count in out.failures.items():
            if count > spec.backoff_limit_per_index and index not in out.succeeded:
                out.failed.add(index)
    out.failed -= out.succeeded
    return out


@dataclass(frozen=True)
class Plan:
    """What to change: pods to delete and indexes to start."""

    delete: list[core_pb2.Pod]
    create: list[int]


def plan(p: Progress, parallelism: int, blocked: set[int] | None = None) -> Plan:
    """Delete strays, second pods of one index and pods of finished indexes; then start the lowest pending
    indexes with no pod, up to ``parallelism`` active; shrink to ``parallelism`` by stopping the highest
    indexes. ``blocked`` indexes are waiting out their back-off."""
    delete = list(p.stray)
    keep: dict[int, core_pb2.Pod] = {}
    pending = set(p.pending)
    for index, pods in sorted(p.active.items()):
        ordered = sorted(pods, key=lambda x: (x.metadata.creation_timestamp.seconds, x.metadata.name))
        if index not in pending:
            delete.extend(ordered)
            continue
        keep[index] = ordered[0]
        delete.extend(ordered[1:])
    if len(keep) > parallelism:
        surplus = sorted(keep)[parallelism:]
        delete.extend(keep.pop(i) for i in surplus)
    room = max(0, parallelism - len(keep))
    create = [i for i in sorted(pending) if i not in keep and i not in (blocked or set())][:room]
    return Plan(delete, create)
