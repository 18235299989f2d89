"""The rate-limited work queue that feeds controllers' ``reconcile(key)``.

Guarantees (as client-go's ``workqueue``):

* Fair: items are handed out in the order they were added.
* Stingy: an item added several times before a worker takes it is processed once.
* Exclusive: an item is never processed by two workers at once. Added again while it is being
  processed, it is queued once more when the worker calls ``done``.
* Delayed adds (``add_after``, ``add_rate_limited``) keep only the earliest pending time per item.
* Shutdown: ``shutdown()`` stops accepting items and wakes every waiting ``get`` with None once the
  queue is empty; ``shutdown_with_drain()`` also waits until in-flight items are ``done``.

::

    add ──> [dirty? no] ──> queue ──get()──> processing ──done()──> (re-queued if dirty again)
    add_after / add_rate_limited ──timer──> add
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Hashable
from typing import Generic, TypeVar

from controlplane.client import workqueuemetrics as metrics
from controlplane.client.ratelimit import RateLimiter, default_controller_rate_limiter

K = TypeVar("K", bound=Hashable)


class WorkQueue(Generic[K]):
    """A deduplicating, exclusive, rate-limited queue of keys."""

    def __init__(self, name: str = "", rate_limiter: RateLimiter | None = None) -> None:
        self.name = name
        self.rate_limiter = rate_limiter or default_controller_rate_limiter()
        self._queue: collections.deque[K] = collections.deque()
        self._dirty: set[K] = set()
        self._processing: set[K] = set()
        self._waiting: dict[K, tuple[float, asyncio.TimerHandle]] = {}
        self._has_items = asyncio.Event()  # set whenever the queue is non-empty or shutting down
        self._idle = asyncio.Event()  # set whenever nothing is being processed
        self._idle.set()
        self._shutting_down = False
        self._added_at: dict[K, float] = {}
        self._taken_at: dict[K, float] = {}
        label = name or "unnamed"
        self._adds = metrics.ADDS.labels(label)
        self._retries = metrics.RETRIES.labels(label)
        self._queue_duration = metrics.QUEUE_DURATION.labels(label)
        self._work_duration = metrics.WORK_DURATION.labels(label)
        metrics.DEPTH.track(self, label, self.__len__)

    def __len__(self) -> int:
        return len(self._queue)

    def delayed(self) -> int:
        """Items waiting out a delay (``add_after`` / ``add_rate_limited``)."""
        return len(self._waiting)

    @property
    def shutting_down(self) -> bool:
        """True once ``shutdown`` was called."""
        return self._shutting_down

    def add(self, item: K) -> None:
        """Queue an item now (no-op if it is already waiting to be processed)."""
        if self._shutting_down or item in self._dirty:
            return
        self._dirty.add(item)
        self._adds.inc()
        self._added_at.setdefault(item, time.monotonic())
        if item in self._processing:
            return  # queued again by done()
        self._queue.append(item)
        self._wake()

    def add_after(self, item: K, delay: float) -> None:
        """Queue an item after ``delay`` seconds (the earliest pending time wins)."""
        if self._shutting_down:
            return
        if delay <= 0:
            self.add(item)
            return
        loop = asyncio.get_running_loop()
        ready = loop.time() + delay
        pending = self._waiting.get(item)
        if pending is not None:
            if pending[0] <= ready:
                return
            pending[1].cancel()
        self._waiting[item] = (ready, loop.call_at(ready, self._fire, item))

    def _fire(self, item: K) -> None:
        self._waiting.pop(item, None)
        self.add(item)

    def add_rate_limited(self, item: K) -> None:
        """Queue an item after the rate limiter's delay (counts a failure)."""
        self._retries.inc()
        self.add_after(item, self.rate_limiter.when(item))

    def forget(self, item: K) -> None:
        """The item succeeded: reset its back-off."""
        self.rate_limiter.forget(item)

    def num_requeues(self, item: K) -> int:
        """Failures counted for the item since it last succeeded."""
        return self.rate_limiter.num_requeues(item)

    def _wake(self) -> None:
        self._has_items.set()

    async def get(self) -> K | None:
        """The next item to process (mark it ``done`` afterwards), or None when shut down and empty."""
        while not self._queue:
            if self._shutting_down:
                return None
            self._has_items.clear()
            await self._has_items.wait()
        item = self._queue.popleft()
        self._processing.add(item)
        self._idle.clear()
        self._dirty.discard(item)
        now = time.monotonic()
        added = self._added_at.pop(item, None)
        if added is not None:
            self._queue_duration.observe(now - added)
        self._taken_at[item] = now
        return item

    def done(self, item: K) -> None:
        """Processing of an item finished; if it was added meanwhile, queue it again."""
        self._processing.discard(item)
        taken = self._taken_at.pop(item, None)
        if taken is not None:
            self._work_duration.observe(time.monotonic() - taken)
        if not self._processing:
            self._idle.set()
        if item in self._dirty:
            self._queue.append(item)
            self._wake()

    def shutdown(self) -> None:
        """Accept no more items; waiting ``get`` calls return None once the queue is empty."""
        self._shutting_down = True
        for _, handle in self._waiting.values():
            handle.cancel()
        self._waiting.clear()
        self._wake()

    async def shutdown_with_drain(self, timeout: float = 30.0) -> None:
        """Shut down and wait (at most ``timeout``) until in-flight items are done."""
        self.shutdown()
        await asyncio.wait_for(self._idle.wait(), timeout)
