"""Cluster IPs and node ports: allocated by the API server from its ranges, unique across API servers
(etcd claims written with the Service), released on delete; bad requests refused with the field path."""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import AsyncIterator
from typing import Any

import pytest

from controlplane.api.errors import InvalidError
from controlplane.api.objects import from_manifest
from controlplane.api.pb import core_pb2
from controlplane.apiserver.allocator import ServiceRanges
from controlplane.apiserver.main import ApiServer
from controlplane.client.client import ApiClient, ClientConfig
from controlplane.launcher.etcd import EtcdCluster
from tests.conftest import api_config


def service(name: str, namespace: str, **spec: Any) -> core_pb2.Service:
    body = {"ports": [{"name": "http", "port": 80}], "selector": {"app": name}, **spec}
    doc = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": namespace}, "spec": body}
    return from_manifest(doc)  # type: ignore[return-value]


SMALL = ServiceRanges(ipaddress.IPv4Network("127.77.9.0/24"), range(30100, 30110))


@pytest.fixture(scope="module")
async def two_servers() -> AsyncIterator[tuple[ApiServer, ApiServer]]:
    """Two API servers on one etcd, with a small IP range so that concurrent creates collide."""
    with EtcdCluster(1) as etcd:
        servers = [ApiServer(api_config(etcd.endpoints, service_ranges=SMALL)) for _ in range(2)]
        for s in servers:
            await s.start()
        try:
            yield servers[0], servers[1]
        finally:
            for s in servers:
                await s.stop()


@pytest.fixture
async def clients(two_servers: tuple[ApiServer, ApiServer]) -> AsyncIterator[tuple[ApiClient, ApiClient]]:
    a, b = (ApiClient(ClientConfig(endpoints=[f"127.0.0.1:{s.port}"], timeout=30)) for s in two_servers)
    yield a, b
    await a.close()
    await b.close()


@pytest.fixture
async def ns(clients: tuple[ApiClient, ApiClient]) -> str:
    import uuid

    name = f"svc-{uuid.uuid4().hex[:8]}"
    await clients[0].create(from_manifest({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}))
    return name


async def test_a_service_gets_a_cluster_ip_from_the_range(clients: tuple[ApiClient, ApiClient], ns: str) -> None:
    created = await clients[0].create(service("web", ns))
    assert ipaddress.IPv4Address(created.spec.cluster_ip) in SMALL.cluster_ips
    assert list(created.spec.cluster_ips) == [created.spec.cluster_ip]
    headless = await clients[0].create(service("peers", ns, clusterIP="None"))
    assert headless.spec.cluster_ip == "None"
    # An update that leaves the IP out keeps it; changing it is refused.
    got = await clients[0].get(core_pb2.Service, "web", ns)
    got.spec.cluster_ip = ""
    del got.spec.cluster_ips[:]
    assert (await clients[0].update(got)).spec.cluster_ip == created.spec.cluster_ip
    got = await clients[0].get(core_pb2.Service, "web", ns)
    got.spec.cluster_ip = "127.77.9.250" if created.spec.cluster_ip != "127.77.9.250" else "127.77.9.251"
    with pytest.raises(InvalidError, match=r"spec\.clusterIP: field is immutable"):
        await clients[0].update(got)


async def test_requested_ips_and_ports_are_checked(clients: tuple[ApiClient, ApiClient], ns: str) -> None:
    a, b = clients
    await a.create(service("first", ns, clusterIP="127.77.9.200"))
    with pytest.raises(InvalidError, match=r"spec\.clusterIP: 127\.77\.9\.200 is already allocated"):
        await b.create(service("second", ns, clusterIP="127.77.9.200"))
    with pytest.raises(InvalidError, match=r"spec\.clusterIP: 10\.0\.0\.1 is not in the service IP range"):
        await a.create(service("third", ns, clusterIP="10.0.0.1"))
    with pytest.raises(InvalidError, match=r"spec\.ports\[0\]\.nodePort: 80 is not in the node port range 30100-30109"):
        await a.create(service("np", ns, type="NodePort", ports=[{"port": 80, "nodePort": 80}]))
    np = await a.create(service("np", ns, type="NodePort"))
    assert np.spec.ports[0].node_port in SMALL.node_ports
    with pytest.raises(InvalidError, match=r"spec\.ports\[0\]\.nodePort: \d+ is already allocated"):
        await b.create(
            service("np2", ns, type="NodePort", ports=[{"port": 80, "nodePort": np.spec.ports[0].node_port}])
        )
    assert [s.metadata.name for s in (await a.list(core_pb2.Service, ns)).items] == ["first", "np"]


async def test_delete_releases_the_ip_and_node_port(clients: tuple[ApiClient, ApiClient], ns: str) -> None:
    a, b = clients
    made = await a.create(service("web", ns, type="NodePort", clusterIP="127.77.9.201"))
    port = made.spec.ports[0].node_port
    await a.delete(core_pb2.Service, "web", ns)
    again = await b.create(
        service("web2", ns, type="NodePort", clusterIP="127.77.9.201", ports=[{"port": 80, "nodePort": port}])
    )
    assert again.spec.cluster_ip == "127.77.9.201" and again.spec.ports[0].node_port == port
    await b.delete(core_pb2.Service, "web2", ns)


async def test_200_concurrent_creates_through_two_api_servers_get_200_distinct_ips(
    clients: tuple[ApiClient, ApiClient], ns: str
) -> None:
    a, b = clients
    created = await asyncio.gather(*((a if i % 2 else b).create(service(f"s{i}", ns)) for i in range(200)))
    ips = [s.spec.cluster_ip for s in created]
    assert len(set(ips)) == 200
    stored = (await a.list(core_pb2.Service, ns)).items
    assert len({s.spec.cluster_ip for s in stored}) == len(stored) == 200
    await asyncio.gather(*(a.delete(core_pb2.Service, f"s{i}", ns) for i in range(200)))
