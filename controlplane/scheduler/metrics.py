"""The scheduler's metrics, under kube-scheduler's names.

``scheduler_schedule_attempts_total{result}``: ``scheduled`` (a node was chosen and the binding succeeded),
``unschedulable`` (no node fits), ``error`` (the binding failed). ``scheduler_pod_scheduling_duration_seconds``:
from the pod entering the queue to its binding, all attempts included. ``scheduler_pending_pods{queue}`` is
read from the queue at scrape time.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterator

from prometheus_client import REGISTRY, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

ATTEMPTS = Counter("scheduler_schedule_attempts", "Scheduling attempts, by result and profile.", ["result", "profile"])
POD_SCHEDULING_DURATION = Histogram(
    "scheduler_pod_scheduling_duration_seconds",
    "Seconds from a pod entering the scheduling queue to its binding (every attempt included).",
    buckets=(0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 60, 120, 300, 600),
)
PREEMPTION_VICTIMS = Counter("scheduler_preemption_victims", "Pods deleted to make room for higher-priority ones.")


class _QueueCollector(Collector):
    def __init__(self) -> None:
        self._sources: weakref.WeakKeyDictionary[object, Callable[[], tuple[int, int, int]]] = (
            weakref.WeakKeyDictionary()
        )

    def track(self, owner: object, lengths: Callable[[], tuple[int, int, int]]) -> None:
        """Report ``lengths()`` (active, backoff, unschedulable) while ``owner`` lives."""
        self._sources[owner] = lengths

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily("scheduler_pending_pods", "Pods waiting to be scheduled.", labels=["queue"])
        totals = [0, 0, 0]
        for lengths in list(self._sources.values()):
            for i, n in enumerate(lengths()):
                totals[i] += n
        for name, n in zip(("active", "backoff", "unschedulable"), totals, strict=True):
            family.add_metric([name], n)
        yield family


QUEUES = _QueueCollector()
REGISTRY.register(QUEUES)
