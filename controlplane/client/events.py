"""The event recorder: components report what happened to objects as ``Event`` objects.

Repeats are aggregated as Kubernetes does: an event with the same source, involved object, type,
reason and message within ``aggregation_window`` bumps ``count`` and ``lastTimestamp`` of the existing
Event instead of creating a new one. Recording never blocks the caller: events go through a bounded
queue to a background task the recorder owns; when the queue is full, events are dropped and counted.

Under load, ``Normal`` events are rate-limited (``rate`` per second, ``burst``): the scheduler would
otherwise write one ``Scheduled`` Event per pod, as many writes as its bindings. Those over the budget are
dropped, counted in ``rate_limited``, and summed up in one log line a minute. ``Warning`` events are not
limited (they are what an operator looks for), only bounded by the queue.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp

from controlplane.api import kinds
from controlplane.api.errors import ApiError, NotFoundError
from controlplane.api.objects import meta
from controlplane.api.pb import core_pb2, meta_pb2
from controlplane.api.ratelimit import TokenBucket
from controlplane.client.client import ApiClient

log = logging.getLogger(__name__)

NORMAL, WARNING = "Normal", "Warning"


@dataclass
class _Seen:
    name: str
    namespace: str
    count: int
    last: float


def _timestamp() -> Timestamp:
    ts = Timestamp()
    ts.FromDatetime(datetime.now(UTC))
    return ts


def reference(obj: Message) -> meta_pb2.ObjectReference:
    """An ObjectReference to an object."""
    info = kinds.of_message(obj)
    m = meta(obj)
    return meta_pb2.ObjectReference(
        api_version=info.api_version,
        kind=info.kind,
        namespace=m.namespace,
        name=m.name,
        uid=m.uid,
        resource_version=m.resource_version,
    )


class EventRecorder:
    """Records Events for one component (e.g. ``navarch-scheduler``) on one host."""

    def __init__(
        self,
        client: ApiClient,
        component: str,
        host: str = "",
        *,
        aggregation_window: float = 600.0,
        queue_size: int = 1000,
        cache_size: int = 4096,
        rate: float = 0.0,
        burst: int = 100,
    ) -> None:
        self.client = client
        self.component = component
        self.host = host
        self.aggregation_window = aggregation_window
        self._queue: asyncio.Queue[core_pb2.Event] = asyncio.Queue(maxsize=queue_size)
        self._seen: collections.OrderedDict[tuple[str, ...], _Seen] = collections.OrderedDict()
        self._cache_size = cache_size
        self.dropped = 0
        """Events dropped because the queue was full."""
        self.rate_limited = 0
        """Normal events dropped over the rate budget."""
        self._budget = TokenBucket(rate, float(burst)) if rate > 0 else None
        self._reported_limited = 0
        self._reported_at = time.monotonic()
        self._task: asyncio.Task[None] | None = None

    def event(self, obj: Message, type_: str, reason: str, message: str) -> None:
        """Record that ``reason``/``message`` happened to ``obj`` (never blocks)."""
        if type_ not in (NORMAL, WARNING):
            raise ValueError(f"event type must be Normal or Warning, not {type_!r}")
        ev = core_pb2.Event(api_version="v1", kind="Event", reason=reason, message=message[:1024], type=type_)
        ev.involved_object.CopyFrom(reference(obj))
        ev.source.component, ev.source.host = self.component, self.host
        ev.reporting_component = self.component
        ev.reporting_instance = self.host
        stamp = _timestamp()
        ev.first_timestamp.CopyFrom(stamp)
        ev.last_timestamp.CopyFrom(stamp)
        ev.count = 1
        if type_ == NORMAL and self._budget is not None and self._budget.take(time.monotonic()) > 0:
            self.rate_limited += 1
            self._report_limited()
            return
        try:
            self._queue.put_nowait(ev)
        except asyncio.QueueFull:
            self.dropped += 1

    def _report_limited(self) -> None:
        now = time.monotonic()
        if now - self._reported_at >= 60:
            log.info(
                "%s: %d Normal events over the budget of %g/s were not recorded in the last %.0fs",
                self.component,
                self.rate_limited - self._reported_limited,
                self._budget.rate if self._budget else 0,
                now - self._reported_at,
            )
            self._reported_limited, self._reported_at = self.rate_limited, now

    def start(self) -> None:
        """Start the background writer (owned by the recorder; ``stop`` cancels it)."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"events-{self.component}")

    async def stop(self, flush_timeout: float = 5.0) -> None:
        """Write what is queued (for at most ``flush_timeout``), then stop."""
        with contextlib.suppress(TimeoutError):
            await self.flush(flush_timeout)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def flush(self, timeout: float = 5.0) -> None:
        """Wait until every queued event is written."""
        await asyncio.wait_for(self._queue.join(), timeout)

    async def _run(self) -> None:
        while True:
            ev = await self._queue.get()
            try:
                await self._write(ev)
            except ApiError as err:
                log.warning("cannot record event %s for %s: %s", ev.reason, ev.involved_object.name, err.message)
            except Exception:
                log.exception("BUG: recording event %s failed", ev.reason)
            finally:
                self._queue.task_done()

    async def _write(self, ev: core_pb2.Event) -> None:
        ref = ev.involved_object
        key = (
            ev.source.component,
            ev.source.host,
            ref.kind,
            ref.namespace,
            ref.name,
            ref.uid,
            ev.type,
            ev.reason,
            ev.message,
        )
        now = time.monotonic()
        seen = self._seen.get(key)
        if seen is not None and now - seen.last <= self.aggregation_window:
            patch = {"count": seen.count + 1, "lastTimestamp": ev.last_timestamp.ToJsonString()}
            try:
                await self.client.patch(core_pb2.Event, seen.name, patch, seen.namespace)
                seen.count += 1
                seen.last = now
                self._seen.move_to_end(key)
                return
            except NotFoundError:
                pass  # expired or deleted: record it anew
        ev.metadata.namespace = ref.namespace or "default"
        ev.metadata.name = f"{ref.name}.{time.time_ns():x}"
        created = await self.client.create(ev)
        self._seen[key] = _Seen(created.metadata.name, created.metadata.namespace, 1, now)
        self._seen.move_to_end(key)
        while len(self._seen) > self._cache_size:
            self._seen.popitem(last=False)
