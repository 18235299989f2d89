"""The API server keeps etcd bounded on its own: Events expire through leases, and etcd is compacted
periodically by exactly one of several API servers per interval, keeping one interval of history."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator

import grpc
import pytest

from controlplane import transport
from controlplane.api.objects import from_manifest, wrap
from controlplane.api.pb import api_pb2
from controlplane.apiserver.main import ApiServer
from controlplane.launcher.etcd import EtcdCluster
from controlplane.storage import EtcdClient, EtcdConfig
from controlplane.storage.compactor import Compactor
from tests.conftest import api_config
from tests.helpers import Api, api_stub, configmap, create_namespace, eventually_async

EVENT_TTL = 3


def event(name: str, namespace: str, message: str = "m") -> api_pb2.Object:
    return wrap(
        from_manifest(
            {
                "apiVersion": "v1",
                "kind": "Event",
                "metadata": {"name": name, "namespace": namespace},
                "involvedObject": {"kind": "Pod", "name": "p", "namespace": namespace},
                "reason": "Tested",
                "message": message,
                "type": "Normal",
            }
        )
    )


@pytest.fixture
async def short_ttl_api(etcd_cluster: EtcdCluster) -> AsyncIterator[Api]:
    server = ApiServer(api_config(etcd_cluster.endpoints, event_ttl_seconds=EVENT_TTL, compaction_interval=0))
    await server.start()
    channel = transport.make_channel([f"127.0.0.1:{server.port}"])
    try:
        yield api_stub(channel)
    finally:
        await channel.close()
        await server.stop()


async def _exists(api: Api, kind: str, namespace: str, name: str) -> bool:
    try:
        await api.Get(api_pb2.GetRequest(kind=kind, namespace=namespace, name=name), timeout=5)
        return True
    except grpc.aio.AioRpcError as err:
        assert err.code() == grpc.StatusCode.NOT_FOUND
        return False


async def test_events_expire_on_their_own_and_other_kinds_do_not(short_ttl_api: Api) -> None:
    api = short_ttl_api
    ns = f"ttl-{uuid.uuid4().hex[:8]}"
    await create_namespace(api, ns)
    await api.Create(api_pb2.CreateRequest(object=event("once", ns)))
    await api.Create(api_pb2.CreateRequest(object=configmap("kept", ns)))
    assert await _exists(api, "events", ns, "once")
    # etcd deletes it through its lease: no controller runs against this API server.
    await eventually_async(lambda: _gone(api, "events", ns, "once"), timeout=EVENT_TTL + 15)
    assert await _exists(api, "configmaps", ns, "kept")


async def test_an_updated_event_outlives_the_lease_of_its_first_write(short_ttl_api: Api) -> None:
    api = short_ttl_api
    ns = f"ttl-{uuid.uuid4().hex[:8]}"
    await create_namespace(api, ns)
    await api.Create(api_pb2.CreateRequest(object=event("e", ns)))
    await api.Create(api_pb2.CreateRequest(object=event("control", ns)))
    loop = asyncio.get_running_loop()
    deadline = loop.time() + EVENT_TTL + 6
    # Keep writing "e" every second, as the event recorder does when an event repeats: it must stay while
    # "control" (written once, at the same moment and so on the same lease) disappears.
    while loop.time() < deadline:
        current = await api.Get(api_pb2.GetRequest(kind="events", namespace=ns, name="e"), timeout=5)
        current.event.count += 1
        await api.Update(api_pb2.UpdateRequest(object=current))
        await asyncio.sleep(1)
    assert not await _exists(api, "events", ns, "control")
    assert await _exists(api, "events", ns, "e")
    # Once the writes stop it expires too: every update attached a lease (a put without one is permanent).
    await eventually_async(lambda: _gone(api, "events", ns, "e"), timeout=EVENT_TTL + 15)


async def _gone(api: Api, kind: str, namespace: str, name: str) -> bool:
    return not await _exists(api, kind, namespace, name)


@pytest.fixture
def own_etcd() -> Iterator[EtcdCluster]:
    """An etcd no other API server compacts (the session's servers would take turns in the rounds below)."""
    with EtcdCluster(1) as cluster:
        yield cluster


async def test_one_of_several_compactors_compacts_per_interval_keeping_the_previous_one(own_etcd: EtcdCluster) -> None:
    clients = [EtcdClient(EtcdConfig(endpoints=own_etcd.endpoints)) for _ in range(3)]
    for c in clients:
        await c.connect()
    try:
        compactors = [Compactor(c, interval=3600) for c in clients]
        rounds = []
        for round_no in range(4):
            await clients[0].kv.put(f"/soak/round{round_no}", b"x")
            ticks = [await comp.tick() for comp in compactors]
            rounds.append(ticks)
        winners = [sum(t.won for t in ticks) for ticks in rounds]
        # Round 0: the first to look records a revision (and the others learn the version); from then on
        # exactly one server wins each round.
        assert winners[0] >= 1 and all(w == 1 for w in winners[1:]), winners
        compacted = [t.compacted_to for ticks in rounds for t in ticks if t.compacted_to]
        assert compacted, "nothing was ever compacted"
        # Every compaction goes to a revision recorded on an earlier round, never to the current one.
        for i, ticks in enumerate(rounds):
            for t in ticks:
                if t.compacted_to:
                    assert t.compacted_to < t.revision
                    assert any(t.compacted_to == earlier.revision for r in rounds[:i] for earlier in r if earlier.won)
        # A revision older than the compaction is gone for readers.
        oldest = max(compacted)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await clients[0].kv.get("/soak/round0", revision=oldest - 1)
        assert caught.value.code() == grpc.StatusCode.OUT_OF_RANGE
    finally:
        for c in clients:
            await c.close()
