"""Several API server processes on one etcd share the load: a client round-robins over them, and its
informer stays exact — every object once, nothing missed — through a kill -9 of each of them in turn."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from controlplane.api.errors import UnavailableError
from controlplane.api.objects import from_manifest
from controlplane.api.pb import core_pb2
from controlplane.client.client import ApiClient, ClientConfig
from controlplane.client.informer import Informer
from controlplane.launcher import processes
from controlplane.launcher.etcd import EtcdCluster, free_port
from tests.helpers import eventually, eventually_async


@pytest.fixture
def servers(etcd_cluster: EtcdCluster, tmp_path: Path) -> Iterator[list[processes.Daemon]]:
    daemons = [
        processes.apiserver(etcd_cluster.endpoints, f"127.0.0.1:{free_port()}", tmp_path / f"apiserver-{i}.log")
        for i in range(2)
    ]
    for d in daemons:
        d.start()
    try:
        yield daemons
    finally:
        for d in daemons:
            d.stop()


def kill(daemon: processes.Daemon) -> None:
    assert daemon.proc is not None
    daemon.proc.send_signal(signal.SIGKILL)
    daemon.proc.wait(timeout=10)


def configmap(name: str, namespace: str) -> core_pb2.ConfigMap:
    doc = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": namespace}}
    return from_manifest(doc)  # type: ignore[return-value]


async def test_an_informer_over_two_api_servers_stays_exact_through_a_kill_of_one(
    servers: list[processes.Daemon],
) -> None:
    endpoints = [d.argv[d.argv.index("--listen") + 1] for d in servers]
    client = ApiClient(ClientConfig(endpoints=endpoints, timeout=15))
    try:

        async def both_serve() -> bool:
            try:
                for e in endpoints:
                    async with ApiClient(ClientConfig(endpoints=[e], timeout=2)) as one:
                        await one.get(core_pb2.Namespace, "default")
                return True
            except Exception:
                return False

        await eventually_async(both_serve, timeout=30)
        await client.create(from_manifest({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "two"}}))
        seen_added: list[str] = []
        seen_deleted: list[str] = []
        informer: Informer[core_pb2.ConfigMap] = Informer(client, core_pb2.ConfigMap, namespace="two")
        informer.add_event_handler(
            lambda o: seen_added.append(o.metadata.name), None, lambda o: seen_deleted.append(o.metadata.name)
        )
        task = asyncio.create_task(informer.run())
        await informer.wait_for_sync()
        for i in range(40):
            await client.create(configmap(f"before-{i}", "two"))
        # Kill one, change things, bring it back, kill the other: whichever server held the informer's watch,
        # it is cut at least once.
        kill(servers[0])
        for i in range(20):
            await client.create(configmap(f"after-{i}", "two"))
        servers[0].start()
        await eventually_async(both_serve, timeout=30)
        kill(servers[1])
        for i in range(20, 40):
            await client.create(configmap(f"after-{i}", "two"))
        for i in range(0, 40, 2):
            await client.delete(core_pb2.ConfigMap, f"before-{i}", "two")
        truth = {cm.metadata.name for cm in (await client.list(core_pb2.ConfigMap, "two")).items}
        assert len(truth) == 60

        def informer_exact() -> bool:
            return {cm.metadata.name for cm in informer.store.objects()} == truth

        await eventually(informer_exact, timeout=30)
        # Every object was announced once (a relist after the failover may not announce twice), and every
        # delete once.
        assert sorted(seen_added) == sorted({*truth, *(f"before-{i}" for i in range(0, 40, 2))})
        assert sorted(seen_deleted) == sorted(f"before-{i}" for i in range(0, 40, 2))
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    finally:
        await client.close()


async def test_a_create_that_found_no_server_up_is_sent_once_one_is(servers: list[processes.Daemon]) -> None:
    """A Create is never retried once a server may have seen it, but one that the channel refused before
    sending (no connection ready: every server down, or back and still within the channel's reconnect
    back-off) waits for a server within its timeout instead of failing at once."""
    endpoints = [d.argv[d.argv.index("--listen") + 1] for d in servers]
    for d in servers:
        d.stop()
    async with ApiClient(ClientConfig(endpoints=endpoints, timeout=30)) as client:
        # Let the channel fail its first connections so that its back-off is running when a server returns.
        with pytest.raises(UnavailableError):
            await client.get(core_pb2.Namespace, "default", timeout=1)
        create = asyncio.create_task(client.create(configmap("sent-once", "default")))
        await asyncio.sleep(1.5)
        assert not create.done(), "the Create gave up while no server was up"
        servers[1].start()
        created = await asyncio.wait_for(create, timeout=40)
        assert created.metadata.name == "sent-once"
        listed = await client.list(core_pb2.ConfigMap, "default")
        assert [cm.metadata.name for cm in listed.items].count("sent-once") == 1
