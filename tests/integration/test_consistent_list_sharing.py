"""Consistent Lists in a burst share their freshness check, and still see every write made before they were
asked (plausible bugs: one etcd key-count read per List — thousands of agents listing at once overloaded
etcd in bench/scale.py; or a check that started before a write answering a List asked after it)."""

from __future__ import annotations

import asyncio

from controlplane.api.pb import api_pb2
from controlplane.apiserver.main import ApiServer
from controlplane.apiserver.watchcache import WatchCache
from tests.helpers import Api, configmap


async def test_a_burst_of_lists_costs_a_few_checks_and_each_sees_the_writes_before_it(
    api: Api, apiserver: ApiServer, namespace: str
) -> None:
    cache = apiserver.caches["ConfigMap"]
    checks = 0
    real = WatchCache._check_fresh

    async def counted(self: WatchCache, timeout: float) -> bool:
        nonlocal checks
        answer = await real(self, timeout)
        if self is cache:
            checks += 1
            # A slow answer: the whole burst arrives while a check that read etcd *before* it still runs,
            # so that check must not answer for them (it may have missed their writes).
            await asyncio.sleep(0.3)
        return answer

    cache._check_fresh = counted.__get__(cache)  # type: ignore[method-assign]
    try:
        for i in range(5):
            await api.Create(api_pb2.CreateRequest(object=configmap(f"c{i}", namespace)))
            before = checks
            lists = await asyncio.gather(
                *(api.List(api_pb2.ListRequest(kind="cm", namespace=namespace)) for _ in range(200))
            )
            assert all(len(listed.items) == i + 1 for listed in lists), "a List missed a write made before it"
            # The first check answers the Lists that came before it started; one more answers all the others
            # (one per List before: 200).
            assert checks - before <= 3, f"{checks - before} freshness checks for 200 concurrent Lists"

        # Writes interleaved with Lists: every List asked after a write has returned sees that write.
        async def write_then_list(j: int) -> int:
            await api.Create(api_pb2.CreateRequest(object=configmap(f"w{j}", namespace)))
            listed = await api.List(api_pb2.ListRequest(kind="cm", namespace=namespace))
            return sum(1 for o in listed.items if o.config_map.metadata.name == f"w{j}")

        assert await asyncio.gather(*(write_then_list(j) for j in range(50))) == [1] * 50
    finally:
        del cache._check_fresh


class _HeldEtcd:
    """A stand-in for the store (unit-level: the sharing rule is pure logic): ``current_revision`` reads the
    revision when called and answers when the test opens the gate."""

    def __init__(self) -> None:
        self.revision = 10
        self.gate = asyncio.Event()
        self.client = self

    async def current_revision(self) -> int:
        seen = self.revision
        await self.gate.wait()
        return seen

    async def key_summary(self, info: object, revision: int) -> tuple[int, int]:
        return 1, revision  # one object, written at that revision, which the cache has not seen


async def test_a_check_that_read_etcd_before_a_caller_arrived_does_not_answer_for_it() -> None:
    """Caller A's check reads revision 10; a write moves etcd to 20; caller B asks. B must not take A's
    answer (the cache holds everything to 10, not the write at 20): B waits for its own check, which cannot
    be satisfied here, and times out — the plausible bug answers B "fresh" and serves a List without the
    write."""
    from controlplane.api import kinds

    store = _HeldEtcd()
    cache = WatchCache(store, kinds.lookup("ConfigMap"))  # type: ignore[arg-type]
    cache.ready.set()
    cache.event_revision = cache.revision = 10
    a = asyncio.create_task(cache.wait_fresh(2.0))
    await asyncio.sleep(0.01)  # A is reading etcd
    store.revision = 20  # a write lands
    b = asyncio.create_task(cache.wait_fresh(0.5))
    await asyncio.sleep(0.01)
    store.gate.set()
    assert await a is True  # the cache holds everything up to 10
    assert await b is False  # not current for B: the write at 20 is not in
