"""A real agent joins a secure cluster with a bootstrap token, runs a pod, serves logs only to the API server
over mutual TLS, and renews its certificate."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import grpc.aio
import pytest

from controlplane import pki, transport
from controlplane.api.errors import AlreadyExistsError
from controlplane.api.pb import core_pb2, podaccess_pb2, podaccess_pb2_grpc
from controlplane.clusterpki import issue_user
from controlplane.launcher.etcd import free_port
from nodeagent.certificates import CertificateRenewer, JoinConfig, NodeCredentials, NodeTLSConfig
from tests.e2e.conftest import AgentProcess, _kill_leftovers, pod_manifest, wait_pod
from tests.helpers import eventually, eventually_async, node_ready
from tests.security.conftest import SecureCluster

BOOTSTRAP = "joinme.0123456789joinme"


async def ensure_bootstrap_token(secure: SecureCluster) -> None:
    """The Secret behind BOOTSTRAP (once per module)."""
    async with secure.admin() as admin:
        token = core_pb2.Secret(type="bootstrap.navarch.io/token")
        token.metadata.name, token.metadata.namespace = "bootstrap-token-joinme", "navarch-system"
        token.data["token-secret"] = b"0123456789joinme"
        token.data["usage-bootstrap-authentication"] = b"true"
        token.data["expiration"] = (datetime.now(UTC) + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ").encode()
        with contextlib.suppress(AlreadyExistsError):  # created by an earlier test of this module
            await admin.create(token)


@pytest.fixture
async def joined_agent(secure: SecureCluster, tmp_path: Path) -> AsyncIterator[AgentProcess]:
    await ensure_bootstrap_token(secure)
    pin = pki.ca_cert_hash(pki.load_cert(Path(secure.pki.ca).read_bytes()))
    node = f"joined-{uuid.uuid4().hex[:6]}"
    agent = AgentProcess(
        node,
        tmp_path / node,
        secure.endpoint,
        ["--join-token", BOOTSTRAP, "--ca-cert-hash", pin, "--bootstrap-server", secure.token_endpoint],
        "127.0.0.1",
    )
    agent.start()
    try:
        async with secure.admin() as admin:
            try:
                await eventually_async(lambda: node_ready(admin, node), timeout=30)
            except TimeoutError:
                raise AssertionError(f"the agent did not join:\n{agent.log_text()}") from None
        yield agent
    finally:
        agent.kill(signal.SIGKILL)
        _kill_leftovers(agent.data_dir)


async def test_a_joined_agent_runs_pods_and_answers_only_the_api_server(
    secure: SecureCluster, joined_agent: AgentProcess
) -> None:
    stored = pki.load_cert((joined_agent.data_dir / "pki" / "node.pem").read_bytes())
    assert pki.identity_of(stored) == pki.Identity(f"system:node:{joined_agent.node}", (pki.NODES_GROUP,))
    async with secure.admin() as admin:
        await admin.create(
            pod_manifest("hello", "default", joined_agent.node, ["sh", "-c", "echo hello over mtls; sleep 60"])
        )
        await wait_pod(admin, "default", "hello", lambda p: p.status.phase == "Running")

        async def logged() -> bool:
            chunks = [c async for c in admin.pod_logs("hello", "default")]
            return b"hello over mtls" in b"".join(chunks)

        await eventually_async(logged, timeout=15)  # API server -> agent over mutual TLS
        node = await admin.get(core_pb2.Node, joined_agent.node)
        port = node.status.daemon_endpoints.agent_endpoint.port
        await admin.delete(core_pb2.Pod, "hello", "default", grace_period_seconds=0)

    # Anyone else, even the cluster admin, is turned away by the agent itself.
    admin_tls = transport.ChannelTLS(
        secure.pki.ca, secure.pki.cert("admin"), secure.pki.key("admin"), server_name=joined_agent.node
    )
    channel = transport.make_channel([f"127.0.0.1:{port}"], admin_tls)
    try:
        call = podaccess_pb2_grpc.AgentStub(channel).ContainerLogs(
            podaccess_pb2.PodLogRequest(namespace="default", name="hello"), timeout=5
        )
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            async for _ in call:
                pass
        assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert "answers only the API server" in (caught.value.details() or "")
    finally:
        await channel.close()


async def test_the_node_certificate_is_renewed_before_it_expires(secure: SecureCluster, tmp_path: Path) -> None:
    # A certificate with 12 s to live, issued as `navarch pki issue-user` would.
    cert, key = issue_user(secure.pki, "system:node:renewing", (pki.NODES_GROUP,), validity=12)
    creds = NodeCredentials(
        NodeTLSConfig(tmp_path / "pki", ca_file=secure.pki.ca, cert_file=cert, key_file=key), "renewing", "127.0.0.1"
    )
    await creds.ensure()
    first = pki.load_cert(creds.cert_pem)
    channel = transport.make_channel([secure.endpoint], creds.channel_tls())
    reconnected: list[transport.ChannelTLS] = []

    async def reconnect(tls: transport.ChannelTLS) -> None:
        reconnected.append(tls)

    task = asyncio.create_task(CertificateRenewer(creds, lambda: channel, reconnect).run())
    try:
        await eventually(lambda: bool(reconnected), timeout=20)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await channel.close()
    renewed = pki.load_cert(creds.cert_pem)
    assert renewed.serial_number != first.serial_number
    assert renewed.not_valid_after_utc > first.not_valid_after_utc
    assert pki.identity_of(renewed).user == "system:node:renewing"
    assert (tmp_path / "pki" / "node.pem").read_bytes() == pki.cert_pem(renewed)
    assert reconnected[0].cert_pem == pki.cert_pem(renewed)


async def test_a_joining_agent_waits_for_an_api_server_that_is_not_up_yet(
    secure: SecureCluster, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    await ensure_bootstrap_token(secure)
    # The token port is reached through a relay that starts listening only after the join has begun.
    port = free_port()
    host, _, target_port = secure.token_endpoint.rpartition(":")

    async def relay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(host, int(target_port))

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    pin = pki.ca_cert_hash(pki.load_cert(Path(secure.pki.ca).read_bytes()))
    creds = NodeCredentials(
        NodeTLSConfig(tmp_path / "pki", join=JoinConfig(BOOTSTRAP, pin, f"127.0.0.1:{port}")),
        "late-joiner",
        "127.0.0.1",
    )
    caplog.set_level(logging.WARNING, logger="nodeagent.certificates")
    joining = asyncio.create_task(creds.ensure())
    await eventually(lambda: "Connection refused" in caplog.text and "retrying" in caplog.text, timeout=10)
    assert not joining.done()
    server = await asyncio.start_server(relay, "127.0.0.1", port)
    try:
        await asyncio.wait_for(joining, 30)
    finally:
        server.close()
    assert pki.identity_of(pki.load_cert(creds.cert_pem)).user == "system:node:late-joiner"
