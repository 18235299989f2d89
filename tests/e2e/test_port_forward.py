"""``navarch port-forward`` end to end: the real CLI process listening locally, the API server relaying to a
real agent, real servers in the pod. An HTTP request, 100 MB each way checked by hash, several connections
at once, a clean close; a Service's port mapped to its pod's (node-allocated) port; and a port that is not
the pod's own refused (plausible bugs: the relay dropping the tail of a stream, or mixing two connections'
bytes; a port of another process on the node forwarded, since pods share the node's network)."""

from __future__ import annotations

import asyncio
import hashlib
import signal
import socket
import subprocess
import threading
from collections.abc import AsyncIterator

import pytest

from controlplane.api.errors import PreconditionError
from controlplane.api.pb import core_pb2
from controlplane.client.client import ApiClient
from tests.cli.conftest import NAVARCH
from tests.e2e.conftest import AgentProcess, eventually_async, pod_manifest, wait_pod

# An echo server on $PORT that also answers "GET" with a short HTTP response.
SERVER = """
import hashlib, os, socket, threading
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((os.environ["POD_IP"], int(os.environ["PORT_ECHO"]))); s.listen(64)
def serve(c):
    first = c.recv(65536)
    if first.startswith(b"GET "):
        body = b"hello through port-forward"
        c.sendall(b"HTTP/1.0 200 OK\\r\\nContent-Length: %d\\r\\n\\r\\n" % len(body) + body)
        c.close(); return
    h = hashlib.sha256(); n = 0
    data = first
    while data:
        h.update(data); n += len(data); c.sendall(data)
        data = c.recv(1 << 20)
    c.sendall(("\\nDONE %d %s\\n" % (n, h.hexdigest())).encode()); c.close()
while True:
    c, _ = s.accept(); threading.Thread(target=serve, args=(c,), daemon=True).start()
"""


def _running(p: core_pb2.Pod) -> bool:
    return p.status.phase == "Running" and all(s.state.HasField("running") for s in p.status.container_statuses)


async def _echo_pod(client: ApiClient, agent: AgentProcess, namespace: str) -> int:
    pod = pod_manifest("echo", namespace, agent.node, ["python3", "-c", SERVER])
    pod.metadata.labels["app"] = "echo"
    pod.spec.containers[0].env.add(name="POD_IP").value_from.field_ref.field_path = "status.podIP"
    pod.spec.containers[0].ports.add(name="echo", container_port=0)
    await client.create(pod)
    running = await wait_pod(client, namespace, "echo", _running)
    port = next(a.container_port for s in running.status.container_statuses for a in s.allocated_ports)

    async def listening() -> bool:
        try:
            socket.create_connection((agent.node_ip, port), timeout=1).close()
        except OSError:
            return False
        return True

    await eventually_async(listening, timeout=20)
    return int(port)


async def _forward(cli_env: dict[str, str], namespace: str, *args: str) -> tuple[subprocess.Popen[str], list[int]]:
    """Start `navarch port-forward`; its process and the local ports it printed."""
    proc = await asyncio.to_thread(
        subprocess.Popen,
        [NAVARCH, "port-forward", "-n", namespace, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=cli_env,
    )
    ports = []
    assert proc.stdout is not None
    for _ in args[1:]:
        line = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), 20)
        assert line.startswith("Forwarding from 127.0.0.1:"), line + (proc.stderr.read() if proc.stderr else "")
        ports.append(int(line.split(":")[1].split()[0]))
    return proc, ports


def _stop(proc: subprocess.Popen[str]) -> str:
    proc.send_signal(signal.SIGINT)
    try:
        _, err = proc.communicate(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
    return err


def _http_get(port: int) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"GET / HTTP/1.0\r\n\r\n")
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    return data


def _echo(port: int, size: int, seed: int) -> tuple[str, str]:
    """Send ``size`` pseudo-random bytes, half-close, read everything back; (sent hash, received report)."""
    block = hashlib.sha256(str(seed).encode()).digest() * 32768  # 1 MiB, distinct per connection
    sent = hashlib.sha256()
    received = bytearray()
    with socket.create_connection(("127.0.0.1", port), timeout=60) as s:

        def reader() -> None:
            while chunk := s.recv(1 << 20):
                received.extend(chunk)

        t = threading.Thread(target=reader)
        t.start()
        left = size
        while left:
            piece = block[: min(left, len(block))]
            s.sendall(piece)
            sent.update(piece)
            left -= len(piece)
        s.shutdown(socket.SHUT_WR)
        t.join(60)
    body, _, report = bytes(received).rpartition(b"\nDONE ")
    assert hashlib.sha256(body).hexdigest() == sent.hexdigest(), "the echo came back different"
    return sent.hexdigest(), report.decode().strip()


async def test_port_forward_carries_http_100_megabytes_and_concurrent_connections(
    cli_env: dict[str, str], client: ApiClient, agent: AgentProcess, namespace: str
) -> None:
    port = await _echo_pod(client, agent, namespace)
    proc, (local,) = await _forward(cli_env, namespace, "echo", f"0:{port}")
    try:
        reply = await asyncio.to_thread(_http_get, local)
        assert reply.startswith(b"HTTP/1.0 200 OK") and reply.endswith(b"hello through port-forward")
        digest, report = await asyncio.to_thread(_echo, local, 100 * 2**20, 1)
        assert report == f"{100 * 2**20} {digest}", "the pod did not get exactly the 100 MB sent"
        results = await asyncio.gather(*(asyncio.to_thread(_echo, local, 2 * 2**20, seed) for seed in range(2, 7)))
        assert all(report == f"{2 * 2**20} {digest}" for digest, report in results)
    finally:
        err = _stop(proc)
    assert "Traceback" not in err, err


async def test_port_forward_to_a_service_reaches_its_pods_allocated_port(
    cli_env: dict[str, str], client: ApiClient, agent: AgentProcess, namespace: str
) -> None:
    await _echo_pod(client, agent, namespace)
    svc = core_pb2.Service()
    svc.metadata.name, svc.metadata.namespace = "echo", namespace
    svc.spec.selector["app"] = "echo"
    p = svc.spec.ports.add(name="echo", port=7000)
    p.target_port.string_value = "echo"
    await client.create(svc)
    # Endpoints are the controller manager's; this tier has none, so write what it would.
    pod = await client.get(core_pb2.Pod, "echo", namespace)
    ep = core_pb2.Endpoints()
    ep.metadata.name, ep.metadata.namespace = "echo", namespace
    subset = ep.subsets.add()
    address = subset.addresses.add(ip=pod.status.pod_ip)
    address.target_ref.kind, address.target_ref.name = "Pod", "echo"
    allocated = next(a.container_port for s in pod.status.container_statuses for a in s.allocated_ports)
    subset.ports.add(name="echo", port=allocated)
    await client.create(ep)
    proc, (local,) = await _forward(cli_env, namespace, "svc/echo", "0:7000")
    try:
        assert (await asyncio.to_thread(_http_get, local)).endswith(b"hello through port-forward")
    finally:
        _stop(proc)


async def test_a_port_the_pod_does_not_listen_on_is_refused(
    client: ApiClient, agent: AgentProcess, namespace: str
) -> None:
    await _echo_pod(client, agent, namespace)
    # Someone else on the node (here: the test) listens on the node's IP: not the pod's to forward.
    other = socket.socket()
    other.bind((agent.node_ip, 0))
    other.listen()
    try:

        async def nothing() -> AsyncIterator[bytes]:
            if False:
                yield b""

        with pytest.raises(PreconditionError, match=f"no process listening on port {other.getsockname()[1]}"):
            async with asyncio.timeout(20):  # a forward that was let through would wait for the other socket
                async for _ in client.port_forward("echo", other.getsockname()[1], nothing(), namespace):
                    pass
    finally:
        other.close()
