"""Concurrent watches are bounded per user and per server on a real, secured API server; the refusal is
RESOURCE_EXHAUSTED naming the bound and its flag, and a closed watch gives its slot back."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator

import grpc
import pytest

from controlplane import transport
from controlplane.api.pb import api_pb2, api_pb2_grpc, core_pb2, podaccess_pb2, rbac_pb2
from controlplane.apiserver.guard import Limits
from controlplane.apiserver.inflight import StreamLimits
from controlplane.apiserver.main import ApiServer, ApiServerConfig, SecurityConfig
from controlplane.clusterpki import ClusterPki, issue_user
from controlplane.launcher.etcd import EtcdCluster
from tests.helpers import eventually, eventually_async
from tests.security.conftest import etcd_client_config

PER_USER, TOTAL = 3, 5
LOGS_PER_USER, EXEC_PER_USER = 2, 1


@pytest.fixture(scope="module")
async def bounded(cluster_pki: ClusterPki, secure_etcd: EtcdCluster) -> AsyncIterator[ApiServer]:
    config = ApiServerConfig(
        etcd=etcd_client_config(cluster_pki, secure_etcd),
        listen="127.0.0.1:0",
        compaction_interval=0,
        security=SecurityConfig(
            tls=transport.ServerTLS(cluster_pki.cert("apiserver"), cluster_pki.key("apiserver"), cluster_pki.ca),
            limits=Limits(
                rate=0,
                streams=StreamLimits(
                    watches_per_user=PER_USER,
                    watches=TOTAL,
                    log_streams_per_user=LOGS_PER_USER,
                    exec_sessions_per_user=EXEC_PER_USER,
                ),
            ),
        ),
    )
    server = ApiServer(config)
    await server.start()
    yield server
    await server.stop()


def _stub(server: ApiServer, pki: ClusterPki, cert: str, key: str) -> tuple[grpc.aio.Channel, api_pb2_grpc.ApiStub]:
    channel = transport.make_channel([f"127.0.0.1:{server.port}"], transport.ChannelTLS(pki.ca, cert, key))
    return channel, api_pb2_grpc.ApiStub(channel)


async def _bind_group(admin: api_pb2_grpc.ApiStub, group: str, role: str) -> None:
    binding = rbac_pb2.ClusterRoleBinding()
    binding.metadata.name = f"{group}-{role}"
    binding.role_ref.kind, binding.role_ref.name = "ClusterRole", role
    subject = binding.subjects.add()
    subject.kind, subject.name = "Group", group
    await admin.Create(api_pb2.CreateRequest(object=api_pb2.Object(cluster_role_binding=binding)), timeout=10)


async def _authorized(stub: api_pb2_grpc.ApiStub, kind: str) -> None:
    """Wait until a new binding has reached the server's RBAC cache (a List is allowed)."""

    async def allowed() -> bool:
        try:
            await stub.List(api_pb2.ListRequest(kind=kind, namespace="default"), timeout=5)
            return True
        except grpc.aio.AioRpcError as err:
            assert err.code() == grpc.StatusCode.PERMISSION_DENIED, err.details()
            return False

    await eventually_async(allowed, timeout=10)


async def _open_watch(stub: api_pb2_grpc.ApiStub) -> grpc.aio.UnaryStreamCall:
    """A watch that is running: its first event (the namespace that exists) has arrived."""
    call = stub.Watch(api_pb2.WatchRequest(kind="namespaces", field_selector="metadata.name=default"))
    await call.read()
    return call


async def _refusal(stub: api_pb2_grpc.ApiStub) -> str:
    call = stub.Watch(api_pb2.WatchRequest(kind="namespaces"))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call.read()
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    return caught.value.details() or ""


async def test_watches_are_bounded_per_user_and_per_server(bounded: ApiServer, cluster_pki: ClusterPki) -> None:
    admin_ch, admin = _stub(bounded, cluster_pki, cluster_pki.cert("admin"), cluster_pki.key("admin"))
    await _bind_group(admin, "watchers", "view")
    users = []
    for name in ("alice", "bob"):
        cert, key = issue_user(cluster_pki, name, ("watchers",))
        users.append(_stub(bounded, cluster_pki, cert, key))
    (_, alice), (_, bob) = users
    await _authorized(alice, "namespaces")
    await _authorized(bob, "namespaces")
    held: list[grpc.aio.UnaryStreamCall] = []
    try:
        held += [await _open_watch(alice) for _ in range(PER_USER)]
        assert f'user "alice" already has {PER_USER} open watches (limit {PER_USER}, --max-watches-per-user)' in (
            await _refusal(alice)
        )
        # A closed watch gives its slot back.
        held.pop().cancel()
        await eventually(lambda: bounded.guard.inflight.open("Watch", "alice") == PER_USER - 1)
        held.append(await _open_watch(alice))
        # bob is not limited by alice's watches, but the server's bound counts everyone's, the exempt
        # administrator's too.
        held.append(await _open_watch(bob))
        held.append(await _open_watch(admin))
        details = await _refusal(bob)
        assert f"this API server already serves {TOTAL} watches (limit {TOTAL}, --max-watches)" in details
        assert f"this API server already serves {TOTAL} watches" in await _refusal(admin)
    finally:
        for call in held:
            call.cancel()
        for channel, _ in users:
            await channel.close()
        await admin_ch.close()
    await eventually(lambda: bounded.guard.inflight.open("Watch") == 0)


async def test_log_streams_and_exec_sessions_are_bounded_per_user(bounded: ApiServer, cluster_pki: ClusterPki) -> None:
    # The pod's node answers nothing (its agent endpoint accepts TCP and never speaks), so every log stream
    # and exec session opened on it stays open — a slow agent, as seen from the API server.
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)
    admin_ch, admin = _stub(bounded, cluster_pki, cluster_pki.cert("admin"), cluster_pki.key("admin"))
    node = core_pb2.Node()
    node.metadata.name = "silent-node"
    node.status.daemon_endpoints.agent_endpoint.address = "127.0.0.1"
    node.status.daemon_endpoints.agent_endpoint.port = silent.getsockname()[1]
    await admin.Create(api_pb2.CreateRequest(object=api_pb2.Object(node=node)), timeout=10)
    pod = core_pb2.Pod()
    pod.metadata.name, pod.metadata.namespace = "quiet", "default"
    pod.spec.node_name = "silent-node"
    pod.spec.containers.add(name="c", command=["sleep", "60"])
    await admin.Create(api_pb2.CreateRequest(object=api_pb2.Object(pod=pod)), timeout=10)
    await _bind_group(admin, "streamers", "edit")
    cert, key = issue_user(cluster_pki, "carol", ("streamers",))
    channel, carol = _stub(bounded, cluster_pki, cert, key)
    await _authorized(carol, "pods")
    held: list[grpc.aio.Call] = []
    slots = bounded.guard.inflight

    def logs() -> grpc.aio.UnaryStreamCall:
        return carol.PodLogs(podaccess_pb2.PodLogRequest(namespace="default", name="quiet", follow=True))

    async def exec_frames() -> AsyncIterator[podaccess_pb2.PodExecInput]:
        start = podaccess_pb2.PodExecStart(namespace="default", name="quiet", command=["true"])
        yield podaccess_pb2.PodExecInput(start=start)
        await asyncio.sleep(60)

    async def refused(call: grpc.aio.Call) -> str:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await call.read()
        assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, caught.value.details()
        return caught.value.details() or ""

    try:
        held += [logs() for _ in range(LOGS_PER_USER)]
        await eventually(lambda: slots.open("PodLogs", "carol") == LOGS_PER_USER, timeout=10)
        details = await refused(logs())
        assert f'user "carol" already has {LOGS_PER_USER} open log streams (limit {LOGS_PER_USER}, ' in details
        assert "--max-log-streams-per-user" in details
        held.append(carol.PodExec(exec_frames()))
        await eventually(lambda: slots.open("PodExec", "carol") == EXEC_PER_USER, timeout=10)
        details = await refused(carol.PodExec(exec_frames()))
        assert f"open exec sessions (limit {EXEC_PER_USER}, --max-exec-sessions-per-user)" in details
    finally:
        for call in held:
            call.cancel()
        await channel.close()
        await admin_ch.close()
        silent.close()
    await eventually(lambda: slots.open("PodLogs") == 0 and slots.open("PodExec") == 0, timeout=10)
