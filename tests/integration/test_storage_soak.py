"""Soak: Lease renewals and Events for a while keep etcd's in-use database size bounded, and old Events are
gone, with nothing but the API server's own compaction and Event leases at work."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from controlplane import transport
from controlplane.api.objects import from_manifest, wrap
from controlplane.api.pb import api_pb2
from controlplane.apiserver.main import ApiServer
from controlplane.launcher.etcd import EtcdCluster
from controlplane.storage import EtcdClient, EtcdConfig
from tests.conftest import api_config
from tests.helpers import Api, api_stub, create_namespace

NODES = 20
RENEW_EVERY = 0.2  # 100 Lease writes per second in all (a 1,000-node cluster renews ~100/s)
EVENTS_PER_SECOND = 20
EVENT_TTL = 5
COMPACTION_INTERVAL = 5.0
SOAK_SECONDS = 75


@pytest.fixture
async def cluster() -> AsyncIterator[tuple[Api, EtcdClient]]:
    with EtcdCluster(1) as etcd:
        server = ApiServer(
            api_config(etcd.endpoints, event_ttl_seconds=EVENT_TTL, compaction_interval=COMPACTION_INTERVAL)
        )
        await server.start()
        channel = transport.make_channel([f"127.0.0.1:{server.port}"])
        raw = EtcdClient(EtcdConfig(endpoints=etcd.endpoints))
        await raw.connect()
        try:
            yield api_stub(channel), raw
        finally:
            await raw.close()
            await channel.close()
            await server.stop()


def lease(name: str) -> api_pb2.Object:
    return wrap(
        from_manifest(
            {
                "apiVersion": "coordination/v1",
                "kind": "Lease",
                "metadata": {"name": name, "namespace": "soak"},
                "spec": {"holderIdentity": name, "leaseDurationSeconds": 40},
            }
        )
    )


def event(i: int) -> api_pb2.Object:
    return wrap(
        from_manifest(
            {
                "apiVersion": "v1",
                "kind": "Event",
                "metadata": {"name": f"e{i}", "namespace": "soak"},
                "involvedObject": {"kind": "Pod", "name": f"p{i % 50}", "namespace": "soak"},
                "reason": "Soak",
                "message": "x" * 400,
                "type": "Normal",
            }
        )
    )


async def in_use(raw: EtcdClient) -> int:
    return int((await raw.maintenance.status(timeout=5)).dbSizeInUse)


async def test_lease_renewals_and_events_keep_etcd_bounded_and_old_events_vanish(
    cluster: tuple[Api, EtcdClient],
) -> None:
    api, raw = cluster
    await create_namespace(api, "soak")
    renewed = [await api.Create(api_pb2.CreateRequest(object=lease(f"node-{i}"))) for i in range(NODES)]
    written = 0  # bytes of values written, to compare growth with
    stop = asyncio.Event()

    async def renew(i: int) -> None:
        nonlocal written
        current = renewed[i]
        while not stop.is_set():
            current.lease.spec.lease_transitions += 1
            current = await api.Update(api_pb2.UpdateRequest(object=current))
            written += current.ByteSize()
            await asyncio.sleep(RENEW_EVERY)

    async def record_events() -> None:
        nonlocal written
        i = 0
        while not stop.is_set():
            created = await api.Create(api_pb2.CreateRequest(object=event(i)))
            written += created.ByteSize()
            i += 1
            await asyncio.sleep(1 / EVENTS_PER_SECOND)

    samples: list[tuple[int, int]] = []  # (bytes written so far, in-use DB size)
    async with asyncio.TaskGroup() as tg:
        for i in range(NODES):
            tg.create_task(renew(i))
        tg.create_task(record_events())
        for _ in range(SOAK_SECONDS // 5):
            await asyncio.sleep(5)
            samples.append((written, await in_use(raw)))
        stop.set()

    # The size saws up and down with each compaction, so single samples are compared peak to peak: the
    # highest of the last third against the highest of the middle third (one sample taken just after a
    # compaction and one just before would show growth that is not there).
    third = len(samples) // 3
    middle, last = samples[third : 2 * third], samples[2 * third :]
    written_since = last[-1][0] - middle[0][0]
    grown_since = max(size for _, size in last) - max(size for _, size in middle)
    print(f"soak: wrote {written_since} B after the first third; peak in-use DB grew {grown_since} B; {samples}")
    assert written_since > 500_000, "the soak did not write enough to show anything"
    # Without compaction the in-use size grows with every revision (more than the bytes written); with it,
    # the database holds about one interval of history plus the live objects.
    assert grown_since < written_since // 4, samples
    # Events older than the TTL (plus the lease-sharing window) are gone; the recent ones are there.
    listed = await api.List(api_pb2.ListRequest(kind="events", namespace="soak"))
    names = {int(item.event.metadata.name[1:]) for item in listed.items}
    newest = max(names)
    assert "e0" not in {item.event.metadata.name for item in listed.items}
    assert len(names) <= EVENTS_PER_SECOND * (EVENT_TTL + 1 + 10), len(names)
    assert min(names) > newest - EVENTS_PER_SECOND * (EVENT_TTL + 1 + 10)
