"""The API server's metrics, under kube-apiserver's names where it has one.

Request metrics are recorded by the request guard for every call; the watch caches' figures are read at
scrape time (no per-event cost beyond two integer increments). ``code`` is the gRPC status name (``OK``,
``NOT_FOUND`` ...), not an HTTP code; ``verb`` is Kubernetes' upper-case verb (``LIST``, ``WATCH`` ...).
"""

from __future__ import annotations

import weakref
from collections.abc import Iterator, Mapping

from prometheus_client import REGISTRY, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from controlplane.apiserver.watchcache import WatchCache

REQUESTS = Counter(
    "apiserver_request",
    "Requests served, by verb, resource, subresource and gRPC status code.",
    ["verb", "resource", "subresource", "code"],
)
REQUEST_DURATION = Histogram(
    "apiserver_request_duration_seconds",
    "Time to serve a request (streams: their whole life), by verb and resource.",
    ["verb", "resource"],
    buckets=(
        0.005,
        0.01,
        0.025,
        0.05,
        0.1,
        0.2,
        0.4,
        0.6,
        0.8,
        1.0,
        1.25,
        1.5,
        2,
        3,
        4,
        5,
        6,
        8,
        10,
        15,
        20,
        30,
        45,
        60,
    ),
)


def record(verb: str, resource: str, subresource: str, code: str, seconds: float) -> None:
    """One finished request."""
    verb = verb.upper()
    REQUESTS.labels(verb, resource, subresource, code).inc()
    REQUEST_DURATION.labels(verb, resource).observe(seconds)


class CacheCollector(Collector):
    """``apiserver_storage_objects``, ``watch_cache_capacity``, ``apiserver_registered_watchers`` and the watch
    caches' event counters, summed over every API server of this process (tests run several)."""

    def __init__(self) -> None:
        self._servers: weakref.WeakSet[_Caches] = weakref.WeakSet()

    def track(self, caches: Mapping[str, WatchCache]) -> _Caches:
        """Report these caches for as long as the returned handle lives."""
        handle = _Caches(caches)
        self._servers.add(handle)
        return handle

    def collect(self) -> Iterator[Metric]:
        objects = GaugeMetricFamily("apiserver_storage_objects", "Objects stored, by resource.", labels=["resource"])
        capacity = GaugeMetricFamily(
            "watch_cache_capacity", "Events held in the watch cache's history, by resource.", labels=["resource"]
        )
        watchers = GaugeMetricFamily("apiserver_registered_watchers", "Watches open, by resource.", labels=["resource"])
        received = CounterMetricFamily(
            "apiserver_watch_cache_events_received", "Events the watch cache applied, by resource.", labels=["resource"]
        )
        dispatched = CounterMetricFamily(
            "apiserver_watch_cache_events_dispatched",
            "Events offered to watchers (one per watcher), by resource.",
            labels=["resource"],
        )
        totals: dict[str, list[int]] = {}
        for handle in list(self._servers):
            for cache in handle.caches.values():
                row = totals.setdefault(cache.info.plural, [0, 0, 0, 0, 0])
                row[0] += cache.object_count
                row[1] += cache.history_length
                row[2] += cache.watcher_count
                row[3] += cache.events_received
                row[4] += cache.events_dispatched
        for resource, (n, h, w, r, d) in sorted(totals.items()):
            objects.add_metric([resource], n)
            capacity.add_metric([resource], h)
            watchers.add_metric([resource], w)
            received.add_metric([resource], r)
            dispatched.add_metric([resource], d)
        yield from (objects, capacity, watchers, received, dispatched)


class _Caches:
    def __init__(self, caches: Mapping[str, WatchCache]) -> None:
        self.caches = caches


CACHES = CacheCollector()
REGISTRY.register(CACHES)
