"""Work queue metrics, under client-go's names, one series per queue name (the controller's name).

``workqueue_adds_total``, ``workqueue_retries_total``, ``workqueue_queue_duration_seconds`` (added → taken
by a worker), ``workqueue_work_duration_seconds`` (taken → done), and ``workqueue_depth`` (items waiting now,
read from the queues at scrape time; queues of one name in one process are summed).
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterator

from prometheus_client import REGISTRY, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

_BUCKETS = (1e-5, 1e-4, 1e-3, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 60)
ADDS = Counter("workqueue_adds", "Items added to the queue, by queue name.", ["name"])
RETRIES = Counter("workqueue_retries", "Rate-limited re-adds (failures), by queue name.", ["name"])
QUEUE_DURATION = Histogram(
    "workqueue_queue_duration_seconds", "Seconds an item waited before a worker took it.", ["name"], buckets=_BUCKETS
)
WORK_DURATION = Histogram(
    "workqueue_work_duration_seconds", "Seconds a worker spent on an item.", ["name"], buckets=_BUCKETS
)


class _DepthCollector(Collector):
    def __init__(self) -> None:
        self._queues: weakref.WeakKeyDictionary[object, tuple[str, Callable[[], int]]] = weakref.WeakKeyDictionary()

    def track(self, queue: object, name: str, depth: Callable[[], int]) -> None:
        self._queues[queue] = (name, depth)

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily("workqueue_depth", "Items waiting in the queue, by queue name.", labels=["name"])
        totals: dict[str, int] = {}
        for name, depth in list(self._queues.values()):
            totals[name] = totals.get(name, 0) + depth()
        for name, n in sorted(totals.items()):
            family.add_metric([name], n)
        yield family


DEPTH = _DepthCollector()
REGISTRY.register(DEPTH)
