"""The scheduling queue, in three parts as in Kubernetes.

::

    add / spec change ──> active (by priority, then age) ──pop──> scheduling cycle
                            ^        ^                                 │ no node fits
                            │        └── back-off expired ── backoff <─┤ (or error)
                            │                                  ^       v
                            └─ relevant cluster event ── unschedulable (parked)
                                (node added/changed, pod deleted)   + every ``retry`` seconds

A pod's back-off is ``initial * 2**(attempts-1)`` capped at ``max``. A cluster event moves every parked pod
to back-off (or straight to active if its back-off has passed). If an event arrives while a pod is being
scheduled, a failed attempt goes to back-off instead of being parked, so the event is not lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from controlplane.api.pb import core_pb2


@dataclass
class QueuedPod:
    """A pod waiting to be scheduled, with its attempt history."""

    pod: core_pb2.Pod
    attempts: int = 0
    added: float = field(default_factory=time.monotonic)
    parked_at: float = 0.0
    last_message: str = ""
    """The last unschedulable message reported for it (condition and Event are written only on change)."""

    @property
    def uid(self) -> str:
        """The pod's uid."""
        return self.pod.metadata.uid


class SchedulingQueue:
    """Active, back-off and unschedulable pods; ``pop`` waits for the next one to schedule."""

    def __init__(
        self,
        *,
        backoff_initial: float = 1.0,
        backoff_max: float = 10.0,
        retry: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.retry = retry
        self._clock = clock
        self._pods: dict[str, QueuedPod] = {}
        self._active: list[tuple[int, float, int, str]] = []  # (-priority, added, seq, uid)
        self._backoff: list[tuple[float, int, str]] = []  # (ready at, seq, uid)
        self._where: dict[str, str] = {}  # uid -> "active" | "backoff" | "unschedulable" | "flight"
        self._seq = itertools.count()
        self._wake = asyncio.Event()
        self._moved_during_flight: set[str] = set()
        self._last_retry_scan = 0.0

    # ------------------------------------------------------------ counts

    def lengths(self) -> tuple[int, int, int]:
        """(active, backoff, unschedulable)."""
        where = list(self._where.values())
        return where.count("active"), where.count("backoff"), where.count("unschedulable")

    def __contains__(self, uid: str) -> bool:
        return uid in self._pods

    # ------------------------------------------------------------ inputs

    def add(self, pod: core_pb2.Pod) -> None:
        """A new pod to schedule (or a newer version of one already queued)."""
        uid = pod.metadata.uid
        qp = self._pods.get(uid)
        if qp is None:
            qp = self._pods[uid] = QueuedPod(pod)
            self._push_active(qp)
            return
        spec_changed = qp.pod.spec != pod.spec or qp.pod.metadata.labels != pod.metadata.labels
        qp.pod = pod
        where = self._where.get(uid)
        if spec_changed and where in ("unschedulable", "backoff"):
            self._push_active(qp)  # its own change may make it fit: try again now
        elif where == "flight" and spec_changed:
            self._moved_during_flight.add(uid)

    def delete(self, uid: str) -> None:
        """The pod is gone or was bound: stop scheduling it."""
        self._pods.pop(uid, None)
        self._where.pop(uid, None)
        self._moved_during_flight.discard(uid)

    def move_all(self) -> None:
        """A cluster event that may make parked pods fit: move them to back-off (or active)."""
        now = self._clock()
        for uid, where in list(self._where.items()):
            if where == "unschedulable":
                self._push_backoff_or_active(self._pods[uid], now)
            elif where == "flight":
                self._moved_during_flight.add(uid)

    # ----------------------------------------------------------- results

    def unschedulable(self, qp: QueuedPod) -> None:
        """No node fits: park the pod until a relevant event (or back off, if one came meanwhile)."""
        if qp.uid not in self._pods:
            return
        if qp.uid in self._moved_during_flight:
            self._moved_during_flight.discard(qp.uid)
            self._push_backoff_or_active(qp, self._clock())
            return
        qp.parked_at = self._clock()
        self._where[qp.uid] = "unschedulable"

    def retry_later(self, qp: QueuedPod) -> None:
        """An error (e.g. a failed binding): back off, then try again."""
        if qp.uid in self._pods:
            self._moved_during_flight.discard(qp.uid)
            self._push_backoff_or_active(qp, self._clock())

    def requeue(self, qp: QueuedPod) -> None:
        """A pod that had left the queue (its binding failed) comes back, keeping its attempt count."""
        if qp.uid in self._pods:
            return  # already queued again (a newer version arrived)
        self._pods[qp.uid] = qp
        self._where[qp.uid] = "flight"
        self._push_backoff_or_active(qp, self._clock())

    def done(self, qp: QueuedPod) -> None:
        """Scheduled (assumed): leaves the queue."""
        self.delete(qp.uid)

    # -------------------------------------------------------------- pop

    def backoff_of(self, qp: QueuedPod) -> float:
        """The pod's current back-off in seconds."""
        return float(min(self.backoff_initial * 2.0 ** max(0, qp.attempts - 1), self.backoff_max))

    async def pop(self, timeout: float = 1.0) -> QueuedPod | None:
        """The next pod to schedule, or None after ``timeout`` without one (callers loop)."""
        deadline = self._clock() + timeout
        while True:
            self._flush(self._clock())
            while self._active:
                _, _, _, uid = heapq.heappop(self._active)
                if self._where.get(uid) != "active":
                    continue  # stale entry: the pod moved or left
                qp = self._pods[uid]
                self._where[uid] = "flight"
                qp.attempts += 1
                return qp
            now = self._clock()
            wait = deadline - now
            if self._backoff:
                wait = min(wait, self._backoff[0][0] - now)
            if wait <= 0 and now >= deadline:
                return None
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(0.0, wait)):  # not wait_for: it can swallow a cancellation
                    await self._wake.wait()

    def _flush(self, now: float) -> None:
        while self._backoff and self._backoff[0][0] <= now:
            _, _, uid = heapq.heappop(self._backoff)
            if self._where.get(uid) == "backoff":
                self._push_active(self._pods[uid])
        if now - self._last_retry_scan >= 1.0:  # a scan is O(queue): not on every pop
            self._last_retry_scan = now
            for uid, where in list(self._where.items()):
                if where == "unschedulable" and now - self._pods[uid].parked_at >= self.retry:
                    self._push_backoff_or_active(self._pods[uid], now)

    def _push_active(self, qp: QueuedPod) -> None:
        self._where[qp.uid] = "active"
        heapq.heappush(self._active, (-qp.pod.spec.priority, qp.added, next(self._seq), qp.uid))
        self._wake.set()

    def _push_backoff_or_active(self, qp: QueuedPod, now: float) -> None:
        # Back-off counts from the last attempt: when the pod was parked, or now if it was just tried.
        last_attempt = qp.parked_at if self._where.get(qp.uid) == "unschedulable" else now
        ready = last_attempt + self.backoff_of(qp) if qp.attempts else now
        if ready <= now:
            self._push_active(qp)
            return
        self._where[qp.uid] = "backoff"
        heapq.heappush(self._backoff, (ready, next(self._seq), qp.uid))
        self._wake.set()
