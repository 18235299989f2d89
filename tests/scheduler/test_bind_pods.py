"""BindPods, the batched binding: per-binding results, one transaction, no double binding under a race, and
watchers that see every pod of a batch even when their stream breaks in the middle of its revision."""

from __future__ import annotations

import asyncio
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest

from controlplane.api.errors import InvalidError, UnavailableError
from controlplane.api.pb import api_pb2, core_pb2
from controlplane.apiserver.main import ApiServer
from controlplane.client.client import ApiClient, ClientConfig, WatchEvent
from controlplane.client.informer import Informer
from tests.e2e.conftest import eventually_async
from tests.scheduler.conftest import StartHollow, StartScheduler
from tests.scheduler.test_scheduling import pod


def _binding(p: core_pb2.Pod, node: str, **over: str) -> api_pb2.PodBinding:
    m = p.metadata
    fields = {"namespace": m.namespace, "name": m.name, "uid": m.uid, "resource_version": m.resource_version}
    fields.update(over)
    return api_pb2.PodBinding(node_name=node, **fields)


async def _pods(client: ApiClient, namespace: str, count: int, prefix: str = "p") -> list[core_pb2.Pod]:
    # Another schedulerName: no scheduler of these tests takes them.
    return list(await asyncio.gather(*(client.create(pod(f"{prefix}{i}", namespace, "nobody")) for i in range(count))))


async def test_a_batch_is_one_revision_and_each_binding_gets_its_own_result(client: ApiClient, namespace: str) -> None:
    pods = await _pods(client, namespace, 12)
    done, stale, wrong_uid, taken, deleting = pods[:8], pods[8], pods[9], pods[10], pods[11]
    taken_first = await client.bind_pods([_binding(taken, "node-a")])
    assert [r.code for r in taken_first] == ["OK"]
    changed = await client.get(core_pb2.Pod, stale.metadata.name, namespace)
    changed.metadata.labels["touched"] = "yes"
    await client.update(changed)
    # A finalizer keeps the pod in its deletion (an unassigned pod is otherwise removed at once).
    await client.patch(core_pb2.Pod, deleting.metadata.name, {"metadata": {"finalizers": ["test/hold"]}}, namespace)
    await client.delete(core_pb2.Pod, deleting.metadata.name, namespace)

    request = [
        *(_binding(p, f"node-{i % 3}") for i, p in enumerate(done)),
        _binding(stale, "node-0"),
        _binding(wrong_uid, "node-0", uid=str(uuid.uuid4())),
        _binding(taken, "node-b"),
        _binding(deleting, "node-0", resource_version=""),
        api_pb2.PodBinding(namespace=namespace, name="ghost", node_name="node-0"),
        api_pb2.PodBinding(namespace=namespace, name=done[0].metadata.name, node_name="node-1"),  # named twice
        api_pb2.PodBinding(namespace=namespace, name="x", node_name="Not_A_Node"),
    ]
    results = await client.bind_pods(request)
    codes = [r.code for r in results]
    assert codes == [*["OK"] * 8, "ABORTED", "ABORTED", "ABORTED", "ABORTED", "NOT_FOUND", *["INVALID_ARGUMENT"] * 2]
    assert "resourceVersion" in results[8].message and "uid" in results[9].message
    assert "already assigned to node 'node-a'" in results[10].message and "being deleted" in results[11].message
    assert "named twice" in results[13].message and "nodeName" in results[14].message
    # Every successful binding was written in the same etcd transaction.
    assert len({r.resource_version for r in results[:8]}) == 1
    for i, p in enumerate(done):
        live = await client.get(core_pb2.Pod, p.metadata.name, namespace)
        assert live.spec.node_name == f"node-{i % 3}"
        assert live.metadata.resource_version == results[0].resource_version
    for p in (stale, wrong_uid, deleting):
        assert not (await client.get(core_pb2.Pod, p.metadata.name, namespace)).spec.node_name
    assert (await client.get(core_pb2.Pod, taken.metadata.name, namespace)).spec.node_name == "node-a"
    # A retried request (the same bindings again) answers OK without writing.
    again = await client.bind_pods([_binding(done[0], "node-0", resource_version="")])
    assert [r.code for r in again] == ["OK"]
    assert again[0].resource_version == results[0].resource_version
    await client.patch(core_pb2.Pod, deleting.metadata.name, {"metadata": {"finalizers": []}}, namespace)


async def test_an_oversized_request_is_refused_whole(client: ApiClient, namespace: str) -> None:
    bindings = [api_pb2.PodBinding(namespace=namespace, name=f"p{i}", node_name="n") for i in range(101)]
    with pytest.raises(InvalidError, match="at most 100 per request"):
        await client.bind_pods(bindings)


async def test_racing_binders_never_bind_a_pod_twice(client: ApiClient, namespace: str) -> None:
    """Two clients bind the same 100 pods to different nodes at the same moment, in batches of different
    shapes, with and without resourceVersions. Exactly one binding of each pod wins, and the pod is on that
    binding's node (plausible bug: the transaction's writes unguarded, only checked when read — the loser
    overwrote)."""
    for round_ in range(5):
        pods = await _pods(client, namespace, 100, prefix=f"r{round_}-")
        forward = [_binding(p, "node-left") for p in pods]
        backward = [_binding(p, "node-right", resource_version="") for p in reversed(pods)]
        left, right = await asyncio.gather(
            client.bind_pods(forward),
            asyncio.gather(*(client.bind_pods(backward[i : i + 10]) for i in range(0, 100, 10))),
        )
        right_results = {r.name: r for chunk in right for r in chunk}
        for p, lr in zip(pods, left, strict=True):
            rr = right_results[p.metadata.name]
            assert sorted([lr.code, rr.code]) == ["ABORTED", "OK"], (p.metadata.name, lr, rr)
            live = await client.get(core_pb2.Pod, p.metadata.name, namespace)
            assert live.spec.node_name == ("node-left" if lr.code == "OK" else "node-right")


async def test_two_schedulers_racing_with_batches_never_double_bind(
    client: ApiClient, hollow: StartHollow, start_scheduler: StartScheduler, namespace: str
) -> None:
    """Two schedulers both scheduling the same pods at once (a split brain, no leader election): every pod is
    bound once, and every Scheduled event of a pod names the node it is on."""
    name = f"race-{uuid.uuid4().hex[:6]}"
    nodes = await hollow(20)
    # Every Scheduled Event is written (no rate limit): they are the record of who bound what.
    first = await start_scheduler(name, schedule=False, event_qps=0)
    second = await start_scheduler(name, schedule=False, event_qps=0)
    count = 300
    await asyncio.gather(*(client.create(pod(f"q{i}", namespace, name, cpu="10m")) for i in range(count)))

    async def both_queued() -> bool:
        return first.queue.lengths()[0] == count and second.queue.lengths()[0] == count

    await eventually_async(both_queued, timeout=20)
    loops = [asyncio.create_task(s.schedule_forever()) for s in (first, second)]

    async def all_bound() -> bool:
        listed = await client.list(core_pb2.Pod, namespace)
        return sum(1 for p in listed.items if p.spec.node_name) == count

    try:
        await eventually_async(all_bound, timeout=60)
    finally:
        for loop in loops:
            loop.cancel()
        await asyncio.gather(*loops, return_exceptions=True)
    on = {p.metadata.name: p.spec.node_name for p in (await client.list(core_pb2.Pod, namespace)).items}
    assert set(on.values()) <= set(nodes.names)

    async def scheduled_events() -> dict[str, set[str]]:
        events = await client.list(core_pb2.Event, namespace)
        named: dict[str, set[str]] = defaultdict(set)
        for e in events.items:
            if e.reason == "Scheduled":
                named[e.involved_object.name].add(e.message.rsplit(" to ", 1)[1])
        return named

    named = await scheduled_events()
    wrong = {p: nodes_ for p, nodes_ in named.items() if nodes_ != {on[p]}}
    assert not wrong, wrong
    assert set(named) == set(on)  # every pod's binding was reported
    assert first.bindings.total and second.bindings.total  # both took part
    assert first.binder.requests + second.binder.requests < count  # bindings did travel in batches


class CuttingClient(ApiClient):
    """A real client whose next watch stream breaks after ``cut_after`` events, as when its API server dies
    with the rest of a revision's events not yet sent."""

    cut_after: int | None = None

    async def watch(self, *args: Any, **kwargs: Any) -> AsyncIterator[WatchEvent[Any]]:
        delivered = 0
        async for ev in super().watch(*args, **kwargs):
            yield ev
            delivered += ev.type != "BOOKMARK"
            if self.cut_after is not None and delivered >= self.cut_after:
                self.cut_after = None
                raise UnavailableError("stream cut by the test")


async def test_a_watch_broken_inside_a_batch_revision_misses_nothing(cluster: ApiServer, namespace: str) -> None:
    """All pods of one BindPods call share one revision. A watch that resumes from that revision itself would
    skip the rest of the batch, so an informer resumes from the revision before it (and skips what it has).
    The informer's stream breaks after the first event of a 40-pod batch (plausible bug: resuming from the
    last event's resourceVersion, which lost 39 of the 40)."""
    watcher = CuttingClient(ClientConfig(endpoints=[f"127.0.0.1:{cluster.port}"], timeout=10))
    informer: Informer[core_pb2.Pod] = Informer(watcher, core_pb2.Pod, namespace=namespace, max_backoff=0.2)
    seen_bound: list[str] = []

    def on_update(old: core_pb2.Pod, new: core_pb2.Pod) -> None:
        if new.spec.node_name and not old.spec.node_name:
            seen_bound.append(new.metadata.name)

    informer.add_event_handler(None, on_update, None)
    task = asyncio.create_task(informer.run())
    try:
        pods = await _pods(watcher, namespace, 40)

        async def synced() -> bool:
            return len(informer.store.objects()) == 40

        await eventually_async(synced, timeout=15)
        watcher.cut_after = 1
        results = await watcher.bind_pods([_binding(p, "node-x") for p in pods])
        assert {r.code for r in results} == {"OK"}

        async def every_binding_seen() -> bool:
            cached = informer.store.objects()
            return len(cached) == 40 and all(p.spec.node_name == "node-x" for p in cached)

        await eventually_async(every_binding_seen, timeout=15)
        assert watcher.cut_after is None  # the stream was cut
        assert sorted(seen_bound) == sorted(p.metadata.name for p in pods)  # each exactly once
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await watcher.close()


@pytest.mark.parametrize("code", [grpc.StatusCode.INVALID_ARGUMENT])
async def test_bad_bindings_name_the_field(client: ApiClient, namespace: str, code: grpc.StatusCode) -> None:
    results = await client.bind_pods(
        [
            api_pb2.PodBinding(namespace=namespace, name="", node_name="n"),
            api_pb2.PodBinding(namespace="Bad/NS", name="a", node_name="n"),
            api_pb2.PodBinding(namespace=namespace, name="a", node_name=""),
            api_pb2.PodBinding(namespace=namespace, name="a", node_name="n", resource_version="12x"),
        ]
    )
    assert [r.code for r in results] == [code.name] * 4
    assert "bindings[0].name: required" in results[0].message
    assert "bindings[1].namespace" in results[1].message
    assert "bindings[2].nodeName: required" in results[2].message
    assert "bindings[3].resourceVersion" in results[3].message
