"""The work queue's guarantees: dedup, exclusivity, fairness, back-off growth, drain on shutdown."""

from __future__ import annotations

import asyncio
import itertools

import pytest

from controlplane.client.ratelimit import ItemExponentialBackoff, MaxOf, TokenBucket
from controlplane.client.worker import process_queue
from controlplane.client.workqueue import WorkQueue
from tests.helpers import eventually


def _fast_queue() -> WorkQueue[str]:
    return WorkQueue("test", ItemExponentialBackoff(0.001, 0.01))


async def test_an_item_added_many_times_is_processed_once() -> None:
    q = _fast_queue()
    for _ in range(5):
        q.add("a")
    q.add("b")
    assert len(q) == 2
    assert await q.get() == "a"
    assert await q.get() == "b"


async def test_items_come_out_in_the_order_they_went_in() -> None:
    q = _fast_queue()
    for item in "cab":
        q.add(item)
    assert [await q.get() for _ in range(3)] == ["c", "a", "b"]


async def test_an_item_is_never_processed_by_two_workers_at_once() -> None:
    q = _fast_queue()
    active: set[str] = set()
    overlaps = 0
    processed: list[str] = []

    async def reconcile(key: str) -> None:
        nonlocal overlaps
        if key in active:
            overlaps += 1
        active.add(key)
        await asyncio.sleep(0.005)
        # Re-adding while processing must not hand the key to another worker now.
        if len(processed) < 20:
            q.add(key)
        processed.append(key)
        active.discard(key)

    q.add("k")
    q.add("j")
    workers = [asyncio.create_task(process_queue(q, reconcile)) for _ in range(4)]
    await eventually(lambda: len(processed) >= 22)
    await q.shutdown_with_drain(5)
    await asyncio.gather(*workers)
    assert overlaps == 0
    assert processed.count("k") >= 2  # the re-add was honoured after done()


async def test_readding_during_processing_queues_it_again_after_done() -> None:
    q = _fast_queue()
    q.add("a")
    item = await q.get()
    q.add("a")
    assert len(q) == 0  # not handed out while processing
    q.done(item)  # type: ignore[arg-type]
    assert len(q) == 1 and await q.get() == "a"


def test_per_item_backoff_doubles_from_5ms_to_the_cap() -> None:
    limiter = ItemExponentialBackoff()  # Kubernetes' defaults
    delays = [limiter.when("x") for _ in range(20)]
    assert delays[:4] == [0.005, 0.01, 0.02, 0.04]
    assert all(b == min(2 * a, 1000.0) for a, b in itertools.pairwise(delays))
    assert limiter.num_requeues("x") == 20
    assert max(limiter.when("x") for _ in range(30)) == 1000.0
    limiter.forget("x")
    assert limiter.when("x") == 0.005
    assert limiter.when("y") == 0.005  # items back off independently


def test_the_overall_bucket_limits_bursts() -> None:
    now = [0.0]
    bucket = TokenBucket(rate=10, burst=3, clock=lambda: now[0])
    assert [bucket.when(i) for i in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.when(3) == pytest.approx(0.1)
    assert bucket.when(4) == pytest.approx(0.2)
    now[0] = 10.0
    assert bucket.when(5) == 0.0
    combined = MaxOf(ItemExponentialBackoff(0.005, 1000), TokenBucket(10, 1, clock=lambda: 0.0))
    assert combined.when("a") == 0.005
    assert combined.when("b") == pytest.approx(0.1)


async def test_rate_limited_adds_wait_and_forget_resets() -> None:
    q: WorkQueue[str] = WorkQueue("t", ItemExponentialBackoff(0.05, 1.0))
    q.add_rate_limited("a")
    assert len(q) == 0
    async with asyncio.timeout(2):
        assert await q.get() == "a"
    q.done("a")
    assert q.num_requeues("a") == 1
    q.forget("a")
    assert q.num_requeues("a") == 0


async def test_add_after_keeps_the_earliest_time() -> None:
    q = _fast_queue()
    q.add_after("a", 30)
    q.add_after("a", 0.01)
    async with asyncio.timeout(2):
        assert await q.get() == "a"


async def test_failed_reconciles_are_retried_with_backoff_then_forgotten() -> None:
    q = _fast_queue()
    attempts: list[str] = []

    async def reconcile(key: str) -> None:
        attempts.append(key)
        if len(attempts) < 4:
            raise RuntimeError("not yet")

    q.add("x")
    worker = asyncio.create_task(process_queue(q, reconcile))
    await eventually(lambda: len(attempts) >= 4, timeout=5)
    await q.shutdown_with_drain(5)
    await worker
    assert attempts == ["x"] * 4 and q.num_requeues("x") == 0


async def test_shutdown_drains_in_flight_work_and_releases_waiters() -> None:
    q = _fast_queue()
    waiter = asyncio.create_task(q.get())
    await asyncio.sleep(0)
    q.add("a")
    assert await waiter == "a"
    drained = asyncio.create_task(q.shutdown_with_drain(5))
    await asyncio.sleep(0.01)
    assert not drained.done()  # "a" is still being processed
    q.add("b")  # refused after shutdown
    q.done("a")
    await drained
    assert await q.get() is None
