"""The shared token bucket, and the event recorder's budget for Normal events (plausible bugs: a bucket that
refills past its burst, or never; Warnings dropped with the Normal flood; a dropped event not counted)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from controlplane.api.pb import core_pb2
from controlplane.api.ratelimit import TokenBucket
from controlplane.client.events import NORMAL, WARNING, EventRecorder


def test_a_bucket_starts_full_refills_at_its_rate_and_never_past_its_burst() -> None:
    b = TokenBucket(rate=2.0, burst=3)
    assert [b.take(10.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert b.take(10.0) == pytest.approx(0.5)  # one token refills in 1/rate seconds
    assert b.take(10.5) == 0.0
    assert b.take(110.0) == 0.0  # a long pause refills only up to the burst
    assert [b.take(110.0) for _ in range(3)] == [0.0, 0.0, pytest.approx(0.5)]


def test_a_bucket_of_rate_zero_gives_its_burst_once() -> None:
    b = TokenBucket(rate=0.0, burst=1, tokens=1.0)
    assert b.take(0.0) == 0.0
    assert b.take(1e9) == float("inf")


def test_time_going_backwards_adds_no_tokens() -> None:
    b = TokenBucket(rate=1.0, burst=1)
    assert b.take(100.0) == 0.0
    assert b.take(50.0) > 0
    assert b.take(100.5) > 0  # half a token since the last look, not 50.5


class _Queueless(EventRecorder):
    """An EventRecorder whose queue is read directly (no writer task, no API)."""

    def queued(self) -> list[core_pb2.Event]:
        out = []
        while not self._queue.empty():
            out.append(self._queue.get_nowait())
        return out


def _pod(i: int) -> core_pb2.Pod:
    p = core_pb2.Pod()
    p.metadata.name, p.metadata.namespace, p.metadata.uid = f"p{i}", "ns", f"u{i}"
    return p


async def test_normal_events_over_the_budget_are_dropped_and_counted_warnings_are_not() -> None:
    client: Any = None
    rec = _Queueless(client, "navarch-scheduler", rate=0.001, burst=10, queue_size=10_000)
    for i in range(500):
        rec.event(_pod(i), NORMAL, "Scheduled", f"assigned p{i}")
        if i % 10 == 0:
            rec.event(_pod(i), WARNING, "FailedScheduling", "no node")
    got = rec.queued()
    assert sum(e.type == NORMAL for e in got) == 10  # the burst, then (almost) nothing: 0.001/s
    assert sum(e.type == WARNING for e in got) == 50
    assert rec.rate_limited == 490 and rec.dropped == 0


async def test_without_a_rate_every_event_is_queued() -> None:
    client: Any = None
    rec = _Queueless(client, "c", queue_size=10_000)
    for i in range(300):
        rec.event(_pod(i), NORMAL, "Scheduled", "x")
    assert len(rec.queued()) == 300 and rec.rate_limited == 0
    await asyncio.sleep(0)
