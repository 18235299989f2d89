"""A namespace is never removed while etcd still holds an object in it, and nothing is created in a namespace
once it is terminating — even when the API server's caches lag. Lag is made certain here by stopping one
watch cache of the server under test (its etcd watch), exactly what a slow watch looks like to it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from controlplane.api import kinds
from controlplane.api.errors import ForbiddenError
from controlplane.api.objects import from_manifest
from controlplane.api.pb import core_pb2
from controlplane.apiserver.main import ApiServer
from controlplane.client.client import ApiClient, ClientConfig
from controlplane.launcher.etcd import EtcdCluster
from tests.conftest import api_config


@pytest.fixture
async def two_servers(etcd_cluster: EtcdCluster) -> AsyncIterator[tuple[ApiServer, ApiClient, ApiClient]]:
    lagging, other = ApiServer(api_config(etcd_cluster.endpoints)), ApiServer(api_config(etcd_cluster.endpoints))
    await lagging.start()
    await other.start()
    a = ApiClient(ClientConfig(endpoints=[f"127.0.0.1:{lagging.port}"], timeout=10))
    b = ApiClient(ClientConfig(endpoints=[f"127.0.0.1:{other.port}"], timeout=10))
    try:
        yield lagging, a, b
    finally:
        await a.close()
        await b.close()
        await lagging.stop()
        await other.stop()


async def freeze_cache(server: ApiServer, kind: str) -> None:
    plural = kinds.lookup(kind).plural
    task = next(t for t in server._cache_tasks if t.get_name() == f"watch-cache-{plural}")
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


def namespace(name: str) -> core_pb2.Namespace:
    return from_manifest({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})  # type: ignore[return-value]


def configmap(name: str, ns: str) -> core_pb2.ConfigMap:
    doc = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": ns}, "data": {"a": "1"}}
    return from_manifest(doc)  # type: ignore[return-value]


async def test_a_namespace_holding_objects_in_etcd_is_not_removed_whatever_the_cache_says(
    two_servers: tuple[ApiServer, ApiClient, ApiClient],
) -> None:
    lagging, a, b = two_servers
    await a.create(namespace("race-1"))
    await freeze_cache(lagging, "ConfigMap")  # server A never sees the ConfigMap below
    await b.create(configmap("late", "race-1"))
    _, removed = await a.delete(core_pb2.Namespace, "race-1")
    assert not removed, "the namespace was removed while etcd held a ConfigMap in it"
    ns = await a.get(core_pb2.Namespace, "race-1")
    assert ns.status.phase == "Terminating"
    # Emptied (as the namespace controller does), it goes.
    await b.delete(core_pb2.ConfigMap, "late", "race-1")
    _, removed = await a.delete(core_pb2.Namespace, "race-1")
    assert removed


async def test_nothing_is_created_in_a_terminating_namespace_by_a_server_that_thinks_it_active(
    two_servers: tuple[ApiServer, ApiClient, ApiClient],
) -> None:
    lagging, a, b = two_servers
    await a.create(namespace("race-2"))
    await b.create(configmap("keeps-it-terminating", "race-2"))
    await freeze_cache(lagging, "Namespace")  # server A still believes race-2 is active
    _, removed = await b.delete(core_pb2.Namespace, "race-2")
    assert not removed
    with pytest.raises(ForbiddenError, match='namespace "race-2" is being terminated'):
        await a.create(configmap("sneaked-in", "race-2"))
    names = {cm.metadata.name for cm in (await b.list(core_pb2.ConfigMap, "race-2")).items}
    assert names == {"keeps-it-terminating"}
