"""A 3-member etcd cluster: losing one member does not fail API calls."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from controlplane import transport
from controlplane.api import kinds
from controlplane.api.errors import ConflictError
from controlplane.api.pb import api_pb2
from controlplane.apiserver.main import ApiServer
from controlplane.launcher.etcd import EtcdCluster
from controlplane.storage import EtcdClient, EtcdConfig, Store
from tests.conftest import api_config
from tests.helpers import api_stub, configmap, create_namespace, name_of, next_events


@pytest.fixture(scope="module")
def etcd3() -> Iterator[EtcdCluster]:
    with EtcdCluster(3) as cluster:
        yield cluster


@pytest.fixture
async def server3(etcd3: EtcdCluster) -> AsyncIterator[ApiServer]:
    for i, member in enumerate(etcd3.members):
        if not member.running:
            etcd3.restart_member(i)
    server = ApiServer(api_config(etcd3.endpoints))
    await server.start()
    yield server
    await server.stop()


async def test_storage_guards_writes_on_every_member(etcd3: EtcdCluster) -> None:
    client = EtcdClient(EtcdConfig(endpoints=etcd3.endpoints))
    await client.connect()
    store = Store(client)
    info = kinds.lookup("cm")
    cm = configmap("guarded", "default").config_map
    created = await store.create(info, cm)
    rev = int(created.metadata.resource_version)
    updated = await store.update(info, created, rev)
    with pytest.raises(ConflictError, match="the object has been modified"):
        await store.update(info, created, rev)  # stale: based on the first version
    await store.delete(info, updated, int(updated.metadata.resource_version))
    await client.close()


@pytest.mark.parametrize("victim", [0, 1, 2], ids=["member0", "member1", "member2"])
async def test_a_killed_etcd_member_does_not_fail_api_calls(
    etcd3: EtcdCluster, server3: ApiServer, victim: int
) -> None:
    ch = transport.make_channel([f"127.0.0.1:{server3.port}"])
    api = api_stub(ch)
    ns = f"failover-{victim}"
    await create_namespace(api, ns)
    stream = api.Watch(api_pb2.WatchRequest(kind="cm", namespace=ns))
    etcd3.kill_member(victim)
    try:
        names = []
        for i in range(30):
            await api.Create(api_pb2.CreateRequest(object=configmap(f"c{i}", ns)), timeout=20)
            names.append(f"c{i}")
            got = await api.Get(api_pb2.GetRequest(kind="cm", namespace=ns, name=f"c{i}"), timeout=20)
            assert name_of(got) == f"c{i}"
        listed = await api.List(api_pb2.ListRequest(kind="cm", namespace=ns), timeout=20)
        assert [name_of(i) for i in listed.items] == sorted(names)
        events = await next_events(stream, 30, timeout=30)
        assert sorted(name_of(e.object) for e in events) == sorted(names)
    finally:
        stream.cancel()
        await ch.close()
        etcd3.restart_member(victim)
