"""List and Watch served from the watch cache: consistency, resumption, selectors, pagination, limits."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest

from controlplane.api.objects import unwrap
from controlplane.api.pb import api_pb2
from controlplane.apiserver.main import ApiServer
from controlplane.launcher.etcd import EtcdCluster
from controlplane.storage import EtcdClient, EtcdConfig
from tests.conftest import api_config
from tests.helpers import Api, api_stub, configmap, create_namespace, expect_code, name_of, next_events, pod, rv


async def test_a_list_right_after_a_write_sees_it(api: Api, namespace: str) -> None:
    for i in range(20):
        await api.Create(api_pb2.CreateRequest(object=configmap(f"c{i}", namespace)))
        listed = await api.List(api_pb2.ListRequest(kind="cm", namespace=namespace))
        assert len(listed.items) == i + 1


async def test_watch_resumed_from_a_resource_version_delivers_every_later_event_once_in_order(
    api: Api, namespace: str
) -> None:
    first = await api.Create(api_pb2.CreateRequest(object=configmap("c0", namespace)))
    start = rv(first)
    expected: list[tuple[str, str, int]] = []
    for i in range(1, 30):
        out = await api.Create(api_pb2.CreateRequest(object=configmap(f"c{i}", namespace)))
        expected.append(("ADDED", f"c{i}", rv(out)))
        if i % 3 == 0:
            patched = await api.Patch(
                api_pb2.PatchRequest(kind="cm", namespace=namespace, name=f"c{i}", merge_patch='{"data": {"k": "v"}}')
            )
            expected.append(("MODIFIED", f"c{i}", rv(patched)))
        if i % 5 == 0:
            deleted = await api.Delete(api_pb2.DeleteRequest(kind="cm", namespace=namespace, name=f"c{i}"))
            expected.append(("DELETED", f"c{i}", rv(deleted.object)))
    stream = api.Watch(api_pb2.WatchRequest(kind="cm", namespace=namespace, resource_version=str(start)))
    events = await next_events(stream, len(expected))
    got = [(e.type, name_of(e.object), int(e.resource_version)) for e in events]
    assert got == expected
    # Nothing more arrives: every event exactly once.
    extra = await api.Create(api_pb2.CreateRequest(object=configmap("after", namespace)))
    (last,) = await next_events(stream, 1)
    assert name_of(last.object) == "after" and int(last.resource_version) == rv(extra)
    stream.cancel()


async def test_watch_without_resource_version_starts_with_the_current_state(api: Api, namespace: str) -> None:
    for i in range(3):
        await api.Create(api_pb2.CreateRequest(object=configmap(f"c{i}", namespace)))
    stream = api.Watch(api_pb2.WatchRequest(kind="cm", namespace=namespace))
    events = await next_events(stream, 3)
    assert [(e.type, name_of(e.object)) for e in events] == [("ADDED", "c0"), ("ADDED", "c1"), ("ADDED", "c2")]
    stream.cancel()


async def test_watch_with_selectors_sees_objects_enter_and_leave(api: Api, namespace: str) -> None:
    stream = api.Watch(
        api_pb2.WatchRequest(
            kind="pods", namespace=namespace, label_selector="tier=front", field_selector="spec.nodeName=n1"
        )
    )
    await api.Create(api_pb2.CreateRequest(object=pod("a", namespace, labels={"tier": "back"}, nodeName="n1")))
    await api.Create(api_pb2.CreateRequest(object=pod("b", namespace, labels={"tier": "front"}, nodeName="n2")))
    await api.Patch(
        api_pb2.PatchRequest(
            kind="pod", namespace=namespace, name="a", merge_patch='{"metadata": {"labels": {"tier": "front"}}}'
        )
    )
    await api.Patch(
        api_pb2.PatchRequest(
            kind="pod", namespace=namespace, name="a", merge_patch='{"metadata": {"labels": {"tier": "back"}}}'
        )
    )
    events = await next_events(stream, 2)
    assert [(e.type, name_of(e.object)) for e in events] == [("ADDED", "a"), ("DELETED", "a")]
    stream.cancel()


async def test_list_selectors_filter_by_label_and_field(api: Api, namespace: str) -> None:
    await api.Create(
        api_pb2.CreateRequest(object=pod("a", namespace, labels={"app": "web", "tier": "front"}, nodeName="n1"))
    )
    await api.Create(api_pb2.CreateRequest(object=pod("b", namespace, labels={"app": "web"}, nodeName="n2")))
    await api.Create(api_pb2.CreateRequest(object=pod("c", namespace, labels={"app": "db"})))

    async def names(**kw: Any) -> list[str]:
        resp = await api.List(api_pb2.ListRequest(kind="pods", namespace=namespace, **kw))
        return [name_of(i) for i in resp.items]

    assert await names(label_selector="app=web") == ["a", "b"]
    assert await names(label_selector="app in (web,db),!tier") == ["b", "c"]
    assert await names(label_selector="app!=web") == ["c"]
    assert await names(field_selector="spec.nodeName=n1") == ["a"]
    assert await names(field_selector="spec.nodeName=") == ["c"]
    assert await names(field_selector="metadata.name!=a", label_selector="app=web") == ["b"]
    await expect_code(
        grpc.StatusCode.INVALID_ARGUMENT, api.List(api_pb2.ListRequest(kind="pods", label_selector="app in web"))
    )
    await expect_code(
        grpc.StatusCode.INVALID_ARGUMENT, api.List(api_pb2.ListRequest(kind="cm", field_selector="spec.nodeName=x"))
    )


async def test_pagination_returns_every_object_once_while_objects_are_added(api: Api, namespace: str) -> None:
    initial = {f"c{i:03d}" for i in range(60)}
    for name in sorted(initial):
        await api.Create(api_pb2.CreateRequest(object=configmap(name, namespace)))
    seen: list[str] = []
    token = ""
    pages = 0
    while True:
        resp = await api.List(api_pb2.ListRequest(kind="cm", namespace=namespace, limit=7, **{"continue": token}))
        seen.extend(name_of(i) for i in resp.items)
        pages += 1
        # Objects added between pages, before and after the cursor, must not appear in this list.
        await api.Create(api_pb2.CreateRequest(object=configmap(f"b-new-{pages}", namespace)))
        await api.Create(api_pb2.CreateRequest(object=configmap(f"z-new-{pages}", namespace)))
        token = getattr(resp, "continue")
        if not token:
            break
        assert resp.remaining_item_count > 0
    assert sorted(seen) == sorted(initial) and len(seen) == len(set(seen))
    assert pages == 9


async def test_paged_list_with_a_selector_fills_pages(api: Api, namespace: str) -> None:
    for i in range(30):
        await api.Create(api_pb2.CreateRequest(object=pod(f"p{i:02d}", namespace, labels={"even": str(i % 2 == 0)})))
    seen: list[str] = []
    token = ""
    while True:
        resp = await api.List(
            api_pb2.ListRequest(
                kind="pods", namespace=namespace, limit=4, label_selector="even=True", **{"continue": token}
            )
        )
        assert len(resp.items) <= 4
        seen.extend(name_of(i) for i in resp.items)
        token = getattr(resp, "continue")
        if not token:
            break
    assert seen == [f"p{i:02d}" for i in range(0, 30, 2)]


async def test_bad_continue_tokens_are_invalid(api: Api) -> None:
    err = await expect_code(
        grpc.StatusCode.INVALID_ARGUMENT, api.List(api_pb2.ListRequest(kind="cm", limit=2, **{"continue": "garbage"}))
    )
    assert "continue" in err.details()


async def test_idle_watchers_receive_bookmarks_with_a_fresh_resource_version(api: Api, namespace: str) -> None:
    stream = api.Watch(api_pb2.WatchRequest(kind="leases", namespace=namespace, allow_bookmarks=True))
    # Writes to another kind move the cluster's revision; progress requests carry it to the idle lease cache.
    latest = await api.Create(api_pb2.CreateRequest(object=configmap("bump", namespace)))
    async with asyncio.timeout(15):
        while True:
            ev = await stream.read()
            if ev.type == "BOOKMARK" and int(ev.resource_version) >= rv(latest):
                break
    assert ev.object.lease.metadata.resource_version == ev.resource_version
    stream.cancel()


@pytest.fixture
async def small_window_server(etcd_cluster: EtcdCluster) -> AsyncIterator[ApiServer]:
    server = ApiServer(api_config(etcd_cluster.endpoints, watch_cache_window=10, watcher_queue=5))
    await server.start()
    yield server
    await server.stop()


async def _stub(server: ApiServer) -> tuple[Api, grpc.aio.Channel]:
    from controlplane import transport

    ch = transport.make_channel([f"127.0.0.1:{server.port}"])
    return api_stub(ch), ch


async def test_watch_from_before_the_history_window_is_out_of_range(small_window_server: ApiServer) -> None:
    api, ch = await _stub(small_window_server)
    ns = "window-test"
    await create_namespace(api, ns)
    first = await api.Create(api_pb2.CreateRequest(object=configmap("c0", ns)))
    for i in range(1, 15):
        await api.Create(api_pb2.CreateRequest(object=configmap(f"c{i}", ns)))
    stream = api.Watch(api_pb2.WatchRequest(kind="cm", namespace=ns, resource_version=str(rv(first))))
    err = await expect_code(grpc.StatusCode.OUT_OF_RANGE, stream.read())
    assert "too old resource version" in err.details()
    await ch.close()


async def test_watch_from_a_compacted_revision_is_out_of_range(
    etcd_cluster: EtcdCluster, api: Api, namespace: str
) -> None:
    old = await api.Create(api_pb2.CreateRequest(object=configmap("old", namespace)))
    await api.Create(api_pb2.CreateRequest(object=configmap("old2", namespace)))
    page = await api.List(api_pb2.ListRequest(kind="cm", namespace=namespace, limit=1))
    assert getattr(page, "continue")
    await api.Create(api_pb2.CreateRequest(object=configmap("new", namespace)))
    client = EtcdClient(EtcdConfig(endpoints=etcd_cluster.endpoints))
    await client.connect()
    from controlplane.storage import Store

    await Store(client).compact(await client.current_revision())
    await client.close()
    # A fresh API server only has history from after the compaction.
    server = ApiServer(api_config(etcd_cluster.endpoints))
    await server.start()
    try:
        fresh, ch = await _stub(server)
        stream = fresh.Watch(api_pb2.WatchRequest(kind="cm", namespace=namespace, resource_version=str(rv(old))))
        await expect_code(grpc.StatusCode.OUT_OF_RANGE, stream.read())
        await ch.close()
    finally:
        await server.stop()
    # A continue token whose revision was compacted is out of range too: the client lists again.
    err = await expect_code(
        grpc.StatusCode.OUT_OF_RANGE,
        api.List(
            api_pb2.ListRequest(kind="cm", namespace=namespace, limit=1, **{"continue": getattr(page, "continue")})
        ),
    )
    assert "list again" in err.details()


async def test_a_watcher_that_cannot_keep_up_is_cut_off(small_window_server: ApiServer) -> None:
    api, ch = await _stub(small_window_server)
    ns = "slow-test"
    await create_namespace(api, ns)
    stream = api.Watch(api_pb2.WatchRequest(kind="cm", namespace=ns))
    big = "x" * 200_000
    # The client reads nothing while ~12 MB of events arrive: gRPC's buffers fill, then the watcher's queue.
    for i in range(60):
        await api.Create(api_pb2.CreateRequest(object=configmap(f"c{i}", ns, {"blob": big})))
    async with asyncio.timeout(20):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            while True:
                ev = await stream.read()
                assert ev is not grpc.aio.EOF
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "fell more than 5 events behind" in (err.value.details() or "")
    assert small_window_server.caches["ConfigMap"].watcher_count == 0
    await ch.close()


async def test_watch_and_list_json_round_trip_through_patch(api: Api, namespace: str) -> None:
    created = await api.Create(api_pb2.CreateRequest(object=configmap("cfg", namespace, {"a": "1"})))
    stream = api.Watch(api_pb2.WatchRequest(kind="cm", namespace=namespace, resource_version=str(rv(created))))
    await api.Patch(
        api_pb2.PatchRequest(
            kind="cm", namespace=namespace, name="cfg", merge_patch=json.dumps({"data": {"a": None, "b": "2"}})
        )
    )
    (ev,) = await next_events(stream, 1)
    assert ev.type == "MODIFIED" and dict(unwrap(ev.object).data) == {"b": "2"}
    stream.cancel()


async def test_shared_encodings_are_the_bytes_each_watcher_would_get_on_its_own(api: Api, namespace: str) -> None:
    # One update seen three ways: MODIFIED (no selector), ADDED (it enters app=new), DELETED (it leaves
    # app=old). Each watcher's bytes must equal an encoding made for it alone from the object read from etcd.
    created = await api.Create(api_pb2.CreateRequest(object=pod("w", namespace, labels={"app": "old"})))
    start = str(rv(created))
    streams = {
        sel: api.Watch(
            api_pb2.WatchRequest(kind="pods", namespace=namespace, label_selector=sel, resource_version=start)
        )
        for sel in ("", "app=new", "app=old")
    }
    created.pod.metadata.labels["app"] = "new"
    await api.Update(api_pb2.UpdateRequest(object=created))
    current = await api.Get(api_pb2.GetRequest(kind="pods", namespace=namespace, name="w"))
    try:
        for sel, expected_type in (("", "MODIFIED"), ("app=new", "ADDED"), ("app=old", "DELETED")):
            (ev,) = await next_events(streams[sel], 1)
            assert ev.type == expected_type
            alone = api_pb2.WatchEvent(type=expected_type, object=current, resource_version=str(rv(current)))
            assert ev.SerializeToString() == alone.SerializeToString(), sel
    finally:
        for stream in streams.values():
            stream.cancel()


async def test_a_pod_moving_to_another_node_reaches_both_nodes_watchers_and_no_other(api: Api, namespace: str) -> None:
    streams = {
        node: api.Watch(api_pb2.WatchRequest(kind="pods", namespace=namespace, field_selector=f"spec.nodeName={node}"))
        for node in ("n1", "n2", "n3")
    }
    try:
        await api.Create(api_pb2.CreateRequest(object=pod("mover", namespace, nodeName="n1")))
        assert [e.type for e in await next_events(streams["n1"], 1)] == ["ADDED"]
        await api.Delete(api_pb2.DeleteRequest(kind="pods", namespace=namespace, name="mover", grace_period_seconds=0))
        await api.Create(api_pb2.CreateRequest(object=pod("mover", namespace, nodeName="n2")))
        assert [e.type for e in await next_events(streams["n1"], 1)] == ["DELETED"]
        assert [e.type for e in await next_events(streams["n2"], 1)] == ["ADDED"]
        # n3's watcher hears nothing, for a while (a bookmark at most).
        with pytest.raises(TimeoutError):
            await next_events(streams["n3"], 1, timeout=1.5)
    finally:
        for stream in streams.values():
            stream.cancel()
