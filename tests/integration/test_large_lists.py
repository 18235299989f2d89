"""Thirty ConfigMaps of about 1 MiB each (30 MiB, nearly twice the 16 MiB message cap): an unpaged List is
refused with a clear error, pages stay inside the cap and join into one snapshot, every controller's informer
syncs, and an API server started on that etcd fills its cache and serves."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc
import pytest

from controlplane import transport
from controlplane.api.objects import from_manifest
from controlplane.api.pb import api_pb2, api_pb2_grpc, apps_pb2, core_pb2
from controlplane.apiserver.main import ApiServer
from controlplane.apiserver.registry import MAX_PAGE_BYTES
from controlplane.client.client import ApiClient, ClientConfig
from controlplane.controllers.config import ControllerManagerConfig
from controlplane.controllers.manager import ControllerManager
from controlplane.controllers.registry import CONTROLLERS
from controlplane.launcher.etcd import EtcdCluster
from tests.conftest import api_config
from tests.helpers import eventually_async

BIG = 30
VALUE = 1_000_000  # bytes of data per ConfigMap, just under the 1 MiB object limit


@pytest.fixture(scope="module")
async def etcd() -> AsyncIterator[EtcdCluster]:
    with EtcdCluster(1) as cluster:
        yield cluster


@pytest.fixture(scope="module")
async def server(etcd: EtcdCluster) -> AsyncIterator[ApiServer]:
    api = ApiServer(api_config(etcd.endpoints))
    await api.start()
    client = ApiClient(ClientConfig(endpoints=[f"127.0.0.1:{api.port}"], timeout=30))
    try:
        for i in range(BIG):
            await client.create(
                from_manifest(
                    {
                        "apiVersion": "v1",
                        "kind": "ConfigMap",
                        "metadata": {"name": f"big-{i:02d}", "namespace": "default"},
                        "data": {"blob": chr(ord("a") + i % 26) * VALUE},
                    }
                )
            )
        yield api
    finally:
        await client.close()
        await api.stop()


@pytest.fixture
async def stub(server: ApiServer) -> AsyncIterator[api_pb2_grpc.ApiStub]:
    channel = transport.make_channel([f"127.0.0.1:{server.port}"])
    yield api_pb2_grpc.ApiStub(channel)
    await channel.close()


async def test_an_unpaged_list_over_the_cap_is_refused_asking_for_pages(stub: api_pb2_grpc.ApiStub) -> None:
    for rv in ("", "0"):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            req = api_pb2.ListRequest(kind="configmaps", namespace="default", resource_version=rv)
            await stub.List(req, timeout=30)
        assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        details = caught.value.details() or ""
        assert f"the list of {BIG} configmaps is 28.6 MiB" in details, details
        assert "list in pages with limit (e.g. 500) and continue" in details


async def test_pages_stay_inside_the_cap_and_join_into_one_snapshot(stub: api_pb2_grpc.ApiStub) -> None:
    names: list[str] = []
    token, revision, pages = "", "", 0
    while True:
        req = api_pb2.ListRequest(kind="configmaps", namespace="default", limit=500)
        setattr(req, "continue", token)
        page = await stub.List(req, timeout=30)
        assert page.ByteSize() <= MAX_PAGE_BYTES + 2 * VALUE < transport.MAX_MESSAGE_BYTES
        revision = revision or page.resource_version
        assert page.resource_version == revision  # every page is read at the first page's revision
        names.extend(item.config_map.metadata.name for item in page.items)
        pages += 1
        token = getattr(page, "continue")
        if not token:
            break
    assert pages >= 4
    assert names == [f"big-{i:02d}" for i in range(BIG)]


async def test_the_client_pages_for_callers_that_want_everything(server: ApiServer) -> None:
    client = ApiClient(ClientConfig(endpoints=[f"127.0.0.1:{server.port}"], timeout=30))
    try:
        listed = await client.list(core_pb2.ConfigMap, "default")
        assert [cm.metadata.name for cm in listed.items] == [f"big-{i:02d}" for i in range(BIG)]
        assert all(len(cm.data["blob"]) == VALUE for cm in listed.items)
    finally:
        await client.close()


async def test_every_controller_syncs_and_works_beside_them(server: ApiServer) -> None:
    client = ApiClient(ClientConfig(endpoints=[f"127.0.0.1:{server.port}"], timeout=30))
    manager = ControllerManager(client, ControllerManagerConfig(), list(CONTROLLERS), "test")
    task = asyncio.create_task(manager.run())
    try:
        await asyncio.wait_for(manager.started.wait(), 60)
        rs = from_manifest(
            {
                "apiVersion": "apps/v1",
                "kind": "ReplicaSet",
                "metadata": {"name": "beside", "namespace": "default"},
                "spec": {
                    "replicas": 2,
                    "selector": {"matchLabels": {"app": "beside"}},
                    "template": {
                        "metadata": {"labels": {"app": "beside"}},
                        "spec": {"containers": [{"name": "c", "command": ["sleep", "1"]}]},
                    },
                },
            }
        )
        await client.create(rs)

        async def two_pods() -> bool:
            pods = await client.list(core_pb2.Pod, "default", label_selector="app=beside")
            return len(pods.items) == 2

        await eventually_async(two_pods, timeout=30)
        assert not task.done()
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await client.delete(apps_pb2.ReplicaSet, "beside", "default")
        await client.close()


async def test_an_api_server_started_on_this_etcd_fills_its_cache_and_serves(
    etcd: EtcdCluster, server: ApiServer
) -> None:
    second = ApiServer(api_config(etcd.endpoints))
    await second.start()  # its watch cache lists 30 MiB of ConfigMaps in pages
    try:
        assert len(second.caches["ConfigMap"].objects) >= BIG
        channel = transport.make_channel([f"127.0.0.1:{second.port}"])
        try:
            got = await api_pb2_grpc.ApiStub(channel).Get(
                api_pb2.GetRequest(kind="configmaps", namespace="default", name="big-29"), timeout=10
            )
            assert len(got.config_map.data["blob"]) == VALUE
        finally:
            await channel.close()
    finally:
        await second.stop()
