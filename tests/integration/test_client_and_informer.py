"""The typed client and informers against real API servers: failover, reconnects and relists."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import grpc
import grpc.aio
import pytest

from controlplane import transport
from controlplane.api.errors import AlreadyExistsError, ConflictError, InvalidError, NotFoundError, UnavailableError
from controlplane.api.pb import api_pb2, api_pb2_grpc, core_pb2
from controlplane.apiserver.main import ApiServer
from controlplane.client.client import ApiClient, ClientConfig
from controlplane.client.indexer import object_key
from controlplane.client.informer import Informer
from controlplane.launcher.etcd import EtcdCluster, free_port
from tests.conftest import api_config
from tests.helpers import configmap, eventually, pod


@pytest.fixture
async def client(apiserver: ApiServer) -> AsyncIterator[ApiClient]:
    c = ApiClient(ClientConfig(endpoints=[f"127.0.0.1:{apiserver.port}"], timeout=10))
    yield c
    await c.close()


@pytest.fixture
async def ns(client: ApiClient) -> str:
    name = f"c-{uuid.uuid4().hex[:8]}"
    namespace = core_pb2.Namespace()
    namespace.metadata.name = name
    await client.create(namespace)
    return name


async def test_typed_verbs_round_trip_and_raise_our_errors(client: ApiClient, ns: str) -> None:
    created = await client.create(configmap("cfg", ns, {"a": "1"}).config_map)
    assert isinstance(created, core_pb2.ConfigMap) and created.metadata.uid
    got = await client.get(core_pb2.ConfigMap, "cfg", ns)
    assert got == created
    with pytest.raises(AlreadyExistsError):
        await client.create(configmap("cfg", ns).config_map)
    stale = core_pb2.ConfigMap()
    stale.CopyFrom(got)
    got.data["a"] = "2"
    await client.update(got)
    stale.data["a"] = "3"
    with pytest.raises(ConflictError):
        await client.update(stale)
    patched = await client.patch(core_pb2.ConfigMap, "cfg", {"data": {"b": "x"}}, ns)
    assert dict(patched.data) == {"a": "2", "b": "x"}
    listed = await client.list(core_pb2.ConfigMap, ns)
    assert [o.metadata.name for o in listed.items] == ["cfg"] and listed.resource_version
    _, gone = await client.delete(core_pb2.ConfigMap, "cfg", ns)
    assert gone
    with pytest.raises(NotFoundError):
        await client.get(core_pb2.ConfigMap, "cfg", ns)
    with pytest.raises(InvalidError, match="labelSelector"):
        await client.list(core_pb2.Pod, ns, label_selector="a in b")


async def test_an_unreachable_server_is_named_in_the_error() -> None:
    dead = f"127.0.0.1:{free_port()}"
    async with ApiClient(ClientConfig(endpoints=[dead], timeout=1.0)) as c:
        with pytest.raises(UnavailableError, match=f"cannot reach the API server at {dead}"):
            await c.get(core_pb2.Namespace, "default")


async def test_calls_fail_over_to_the_next_api_server(etcd_cluster: EtcdCluster, apiserver: ApiServer) -> None:
    second = ApiServer(api_config(etcd_cluster.endpoints))
    await second.start()
    endpoints = [f"127.0.0.1:{second.port}", f"127.0.0.1:{apiserver.port}"]
    async with ApiClient(ClientConfig(endpoints=endpoints, timeout=15)) as c:
        await c.get(core_pb2.Namespace, "default")
        await second.stop(grace=0)
        for _ in range(10):
            assert (await c.get(core_pb2.Namespace, "default")).metadata.name == "default"


class Recorder:
    """Applies handler calls to a model of the cache and records protocol violations."""

    def __init__(self, informer: Informer[core_pb2.ConfigMap]) -> None:
        self.state: dict[str, str] = {}  # key -> uid
        self.violations: list[str] = []
        self.deletes: list[str] = []
        informer.add_event_handler(self.add, self.update, self.delete)

    def add(self, obj: core_pb2.ConfigMap) -> None:
        key = object_key(obj)
        if key in self.state:
            self.violations.append(f"phantom add of {key}")
        self.state[key] = obj.metadata.uid

    def update(self, old: core_pb2.ConfigMap, new: core_pb2.ConfigMap) -> None:
        key = object_key(new)
        if key not in self.state:
            self.violations.append(f"update of unknown {key}")
        self.state[key] = new.metadata.uid

    def delete(self, obj: core_pb2.ConfigMap) -> None:
        key = object_key(obj)
        if key not in self.state:
            self.violations.append(f"delete of unknown {key}")
        self.state.pop(key, None)
        self.deletes.append(key)


async def _equal_to_fresh_list(
    informer: Informer[core_pb2.ConfigMap], rec: Recorder, client: ApiClient, ns: str
) -> None:
    async with asyncio.timeout(20):
        while True:
            fresh = await client.list(core_pb2.ConfigMap, ns)
            want = {object_key(o): o.metadata.resource_version for o in fresh.items}
            have = {object_key(o): o.metadata.resource_version for o in informer.store.objects()}
            if want == have and set(rec.state) == set(want):
                return
            await asyncio.sleep(0.05)


async def _churn(client: ApiClient, ns: str, round_: int) -> None:
    """Creates, updates and deletes, including delete-and-recreate of the same name."""
    for i in range(5):
        await client.create(configmap(f"r{round_}-{i}", ns).config_map)
    await client.patch(core_pb2.ConfigMap, "base-0", {"data": {"round": str(round_)}}, ns)
    await client.delete(core_pb2.ConfigMap, f"base-{round_ + 1}", ns)
    await client.delete(core_pb2.ConfigMap, "base-9", ns)
    await client.create(configmap("base-9", ns, {"recreated": str(round_)}).config_map)


async def test_informer_survives_its_api_server_dying_without_lost_or_phantom_events(
    etcd_cluster: EtcdCluster, client: ApiClient, ns: str
) -> None:
    port = free_port()
    server = ApiServer(api_config(etcd_cluster.endpoints, listen=f"127.0.0.1:{port}"))
    await server.start()
    for i in range(10):
        await client.create(configmap(f"base-{i}", ns).config_map)
    watcher = ApiClient(ClientConfig(endpoints=[f"127.0.0.1:{port}"], timeout=5))
    informer: Informer[core_pb2.ConfigMap] = Informer(watcher, core_pb2.ConfigMap, namespace=ns, max_backoff=0.2)
    rec = Recorder(informer)
    task = asyncio.create_task(informer.run())
    try:
        await informer.wait_for_sync(10)
        await _churn(client, ns, 0)
        await _equal_to_fresh_list(informer, rec, client, ns)
        # Cut the stream mid-flight: the informer's only API server goes away while others write.
        await server.stop(grace=0)
        await _churn(client, ns, 1)
        server = ApiServer(api_config(etcd_cluster.endpoints, listen=f"127.0.0.1:{port}"))
        await server.start()
        await _equal_to_fresh_list(informer, rec, client, ns)
        assert "c-" in ns and f"{ns}/base-2" in rec.deletes and f"{ns}/base-1" in rec.deletes
        assert rec.violations == []
        # The restarted server only has history from its own start: the informer had to list again.
        assert informer.relists == 2
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await watcher.close()
        await server.stop(grace=0)


async def test_informer_resumes_on_another_server_without_relisting(
    etcd_cluster: EtcdCluster, apiserver: ApiServer, client: ApiClient, ns: str
) -> None:
    port = free_port()
    first = ApiServer(api_config(etcd_cluster.endpoints, listen=f"127.0.0.1:{port}"))
    await first.start()
    for i in range(10):
        await client.create(configmap(f"base-{i}", ns).config_map)
    watcher = ApiClient(ClientConfig(endpoints=[f"127.0.0.1:{port}", f"127.0.0.1:{apiserver.port}"], timeout=5))
    informer: Informer[core_pb2.ConfigMap] = Informer(watcher, core_pb2.ConfigMap, namespace=ns, max_backoff=0.2)
    rec = Recorder(informer)
    task = asyncio.create_task(informer.run())
    try:
        await informer.wait_for_sync(10)
        await first.stop(grace=0)
        await _churn(client, ns, 0)
        await _equal_to_fresh_list(informer, rec, client, ns)
        assert rec.violations == [] and informer.relists == 1
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await watcher.close()


async def test_informer_indexes_pods_by_node_and_namespace(client: ApiClient, ns: str) -> None:
    await client.create(pod("a", ns, nodeName="n1").pod)
    await client.create(pod("b", ns, nodeName="n2").pod)
    await client.create(pod("c", ns).pod)
    informer: Informer[core_pb2.Pod] = Informer(client, core_pb2.Pod, namespace=ns)
    task = asyncio.create_task(informer.run())
    try:
        await informer.wait_for_sync(10)
        assert [p.metadata.name for p in informer.store.by_index("nodeName", "n1")] == ["a"]
        assert len(informer.store.by_index("namespace", ns)) == 3
        await client.patch(core_pb2.Pod, "c", {"spec": {"nodeName": "n1"}}, ns)
        await eventually(lambda: len(informer.store.by_index("nodeName", "n1")) == 2)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_periodic_resync_redelivers_every_object_as_an_update(client: ApiClient, ns: str) -> None:
    await client.create(configmap("a", ns).config_map)
    informer: Informer[core_pb2.ConfigMap] = Informer(client, core_pb2.ConfigMap, namespace=ns, resync_period=0.05)
    resynced: list[str] = []
    informer.add_event_handler(on_update=lambda old, new: resynced.append(new.metadata.name) if old is new else None)
    task = asyncio.create_task(informer.run())
    try:
        await eventually(lambda: resynced.count("a") >= 2)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


class _Overloaded(api_pb2_grpc.ApiServicer):
    """A real gRPC server that answers every call UNAVAILABLE and counts the attempts."""

    def __init__(self) -> None:
        self.calls: dict[str, int] = {}

    async def _refuse(self, name: str, context: grpc.aio.ServicerContext) -> api_pb2.Object:
        self.calls[name] = self.calls.get(name, 0) + 1
        await context.abort(grpc.StatusCode.UNAVAILABLE, "overloaded")
        raise AssertionError("abort raises")

    async def Create(self, request: object, context: grpc.aio.ServicerContext) -> api_pb2.Object:
        return await self._refuse("Create", context)

    async def Get(self, request: object, context: grpc.aio.ServicerContext) -> api_pb2.Object:
        return await self._refuse("Get", context)

    async def Update(self, request: object, context: grpc.aio.ServicerContext) -> api_pb2.Object:
        return await self._refuse("Update", context)


async def test_only_calls_that_are_safe_to_repeat_are_retried() -> None:
    servicer = _Overloaded()  # type: ignore[abstract]  # the other verbs are never called
    server = transport.make_server()
    api_pb2_grpc.add_ApiServicer_to_server(servicer, server)
    port = transport.add_port(server, "127.0.0.1:0")
    await server.start()
    try:
        async with ApiClient(ClientConfig(endpoints=[f"127.0.0.1:{port}"], max_attempts=4)) as c:
            cm = configmap("x", "default").config_map
            for call in (c.create(cm), c.get(core_pb2.ConfigMap, "x", "default"), c.update(cm)):
                with pytest.raises(UnavailableError):
                    await call
            guarded = core_pb2.ConfigMap()
            guarded.CopyFrom(cm)
            guarded.metadata.resource_version = "7"
            with pytest.raises(UnavailableError):
                await c.update(guarded)
        # Create and an unconditional update once each; the read and the guarded update four times.
        assert servicer.calls == {"Create": 1, "Get": 4, "Update": 1 + 4}
    finally:
        await server.stop(0)
