"""Services through the node proxy, end to end: real agents (each serving every cluster IP), real HTTP
servers as replicas, the controller manager keeping Endpoints."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from controlplane.api.objects import from_manifest
from controlplane.api.pb import apps_pb2, core_pb2
from controlplane.client.client import ApiClient
from tests.cli.conftest import Cli
from tests.e2e.conftest import eventually, eventually_async
from tests.e2e.workloads.conftest import StartAgents

# Answers every GET with its pod's name (the replica that served the request).
SERVER = (
    "import http.server as h,os;n=os.environ['POD_NAME'].encode();"
    "H=type('H',(h.BaseHTTPRequestHandler,),{'do_GET':lambda s:(s.send_response(200),"
    "s.send_header('Content-Length',str(len(n))),s.end_headers(),s.wfile.write(n)),"
    "'log_message':lambda *a:None});h.HTTPServer((os.environ['POD_IP'],int(os.environ['PORT'])),H).serve_forever()"
)


def web(namespace: str, replicas: int, port: int) -> Any:
    env = [
        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
        {"name": "PORT", "value": str(port)},
    ]
    return from_manifest(
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "web", "namespace": namespace},
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {
                        "terminationGracePeriodSeconds": 1,
                        "containers": [
                            {
                                "name": "http",
                                "command": ["python3", "-c", SERVER],
                                "env": env,
                                "ports": [{"name": "http", "containerPort": port, "hostPort": port}],
                                "readinessProbe": {"tcpSocket": {"port": port}, "periodSeconds": 1},
                            }
                        ],
                    },
                },
            },
        }
    )


def get(host: str, port: int, timeout: float = 5.0) -> str:
    """One HTTP GET over a fresh connection; the body."""
    with socket.create_connection((host, port), timeout=timeout) as s:
        s.sendall(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n")
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    _head, sep, body = data.partition(b"\r\n\r\n")
    if not sep:
        raise ConnectionError(f"closed without an answer ({len(data)} bytes)")
    return body.decode()


def server_pids() -> list[int]:
    """Pids of the test's HTTP server processes."""
    out = subprocess.run(["pgrep", "-f", "import http.server as h"], capture_output=True, text=True, check=False)
    return [int(p) for p in out.stdout.split()]


def _environ(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/environ").read_bytes() + b"\0"
    except OSError:
        return b""


async def ready_endpoints(client: ApiClient, namespace: str) -> int:
    try:
        ep = await client.get(core_pb2.Endpoints, "web", namespace)
    except Exception:
        return 0
    return sum(len(s.addresses) for s in ep.subsets)


async def test_cluster_ip_reaches_every_replica_from_every_node_and_refuses_without_endpoints(
    client: ApiClient, namespace: str, agents: StartAgents, cli: Cli
) -> None:
    await agents(3)
    port = 18080
    await client.create(web(namespace, 3, port))
    svc = await client.create(
        from_manifest(
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": "web", "namespace": namespace},
                "spec": {
                    "type": "NodePort",
                    "selector": {"app": "web"},
                    "ports": [{"name": "http", "port": 80, "targetPort": "http"}],
                },
            }
        )
    )
    ip = svc.spec.cluster_ip

    async def three_ready() -> bool:
        return await ready_endpoints(client, namespace) == 3

    await eventually_async(three_ready, timeout=60)
    listed = await cli("get", "svc", "web", "-n", namespace)
    assert listed.out.splitlines()[0].split() == [
        "NAME",
        "TYPE",
        "CLUSTER-IP",
        "EXTERNAL-IP",
        "PORT(S)",
        "ENDPOINTS",
        "AGE",
    ]
    assert listed.out.splitlines()[1].split()[2] == ip and listed.out.splitlines()[1].split()[5] == "3"
    described = await cli("describe", "svc", "web", "-n", namespace)
    endpoints_line = next(line for line in described.out.splitlines() if line.startswith("Endpoints:"))
    assert all(f"{node}:{port}" in endpoints_line for node in ("127.0.0.2", "127.0.0.3", "127.0.0.4"))
    pods = {p.metadata.name for p in (await client.list(core_pb2.Pod, namespace)).items}

    async def all_replicas_answer() -> bool:
        try:
            seen = {await asyncio.to_thread(get, ip, 80) for _ in range(30)}
        except OSError:
            return False
        return seen == pods

    await eventually_async(all_replicas_answer, timeout=30)
    node_port = svc.spec.ports[0].node_port
    for node_ip in ("127.0.0.2", "127.0.0.3", "127.0.0.4"):  # the NodePort answers on every node's IP
        assert await asyncio.to_thread(get, node_ip, node_port) in pods

    # A pod started after the Service exists gets its environment variables.
    out = Path(tempfile.mkdtemp()) / "env"
    probe = {
        "name": "main",
        "command": ["sh", "-c", f'echo "$WEB_SERVICE_HOST $WEB_SERVICE_PORT $WEB_SERVICE_PORT_HTTP" > {out}'],
    }
    await client.create(
        from_manifest(
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": "env-check", "namespace": namespace},
                "spec": {"restartPolicy": "Never", "containers": [probe]},
            }
        )
    )
    await eventually_async(lambda: asyncio.sleep(0, result=out.exists() and out.read_text().strip() != ""), timeout=30)
    assert out.read_text().split() == [ip, "80", "80"]

    await client.patch(apps_pb2.Deployment, "web", {"spec": {"replicas": 0}}, namespace)

    async def none_ready() -> bool:
        return await ready_endpoints(client, namespace) == 0

    await eventually_async(none_ready, timeout=60)

    async def refused() -> bool:
        try:
            await asyncio.to_thread(get, ip, 80, 2.0)
        except ConnectionRefusedError:
            return True
        except OSError:
            return False
        return False

    await eventually_async(refused, timeout=10)


async def test_unready_or_killed_replicas_leave_rotation_without_client_errors(
    client: ApiClient, namespace: str, agents: StartAgents, tmp_path: Path
) -> None:
    await agents(3)
    port = 18081
    deployment = web(namespace, 3, port)
    container = deployment.spec.template.spec.containers[0]
    # Unready while a file named after the pod exists (the test creates it to fail the probe).
    container.readiness_probe.Clear()
    container.readiness_probe.exec.command.extend(["sh", "-c", f'test ! -e {tmp_path}/"$POD_NAME"'])
    container.readiness_probe.period_seconds = 1
    container.readiness_probe.failure_threshold = 1
    await client.create(deployment)
    svc = await client.create(
        from_manifest(
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": "web", "namespace": namespace},
                "spec": {"selector": {"app": "web"}, "ports": [{"name": "http", "port": 81, "targetPort": "http"}]},
            }
        )
    )
    ip = svc.spec.cluster_ip

    async def three_ready() -> bool:
        return await ready_endpoints(client, namespace) == 3

    await eventually_async(three_ready, timeout=60)
    pods = sorted(p.metadata.name for p in (await client.list(core_pb2.Pod, namespace)).items)

    # Readiness failure: once the Endpoints drop the pod, the proxy never sends it a request.
    unready = pods[0]
    (tmp_path / unready).touch()

    async def dropped() -> bool:
        return await ready_endpoints(client, namespace) == 2

    await eventually_async(dropped, timeout=20)

    async def out_of_rotation() -> bool:
        answers = [await asyncio.to_thread(get, ip, 81) for _ in range(12)]
        return unready not in answers

    await eventually_async(out_of_rotation, timeout=5)
    (tmp_path / unready).unlink()
    await eventually_async(three_ready, timeout=20)

    # Killing a replica's process: clients keep getting answers (the proxy tries the next endpoint); the
    # restarted process joins again. The one request in flight when the process dies may fail (its bytes went
    # to the dying process; no TCP proxy can replay it); every request started after it is gone must succeed.
    stop = asyncio.Event()
    errors: list[tuple[float, str]] = []
    answered: list[str] = []

    async def traffic() -> None:
        while not stop.is_set():
            started = time.monotonic()
            try:
                answered.append(await asyncio.to_thread(get, ip, 81))
            except OSError as err:
                errors.append((started, repr(err)))

    loader = asyncio.create_task(traffic())
    victim = pods[1]
    victim_pid = next(p for p in server_pids() if f"POD_NAME={victim}\0".encode() in _environ(p))
    os.kill(victim_pid, signal.SIGKILL)
    await eventually(lambda: _gone_or_zombie(victim_pid), timeout=10)
    dead_at = time.monotonic()

    async def restarted_and_ready() -> bool:
        pod = await client.get(core_pb2.Pod, victim, namespace)
        statuses = pod.status.container_statuses
        return bool(statuses) and statuses[0].restart_count >= 1 and statuses[0].ready

    try:
        await eventually_async(restarted_and_ready, timeout=60)
        await eventually_async(three_ready, timeout=20)

        async def rejoined() -> bool:
            return len(answered) > 30 and victim in answered[-30:]

        await eventually_async(rejoined, timeout=20)
    except TimeoutError:
        pod = await client.get(core_pb2.Pod, victim, namespace)
        raise AssertionError(
            f"{victim} did not rejoin: status {pod.status}; endpoints {await ready_endpoints(client, namespace)}; "
            f"last answers {answered[-30:]}; {len(errors)} errors {errors[-3:]}"
        ) from None
    finally:
        stop.set()
        await loader
    late = [(round(t - dead_at, 3), e) for t, e in errors if t >= dead_at]
    assert late == [], (
        f"{len(late)} requests failed after the process was gone, of {len(answered) + len(errors)}: {late[:3]}"
    )
    assert len(errors) <= 1, errors


def _gone_or_zombie(pid: int) -> bool:
    """Whether a process has died (reaped, or a zombie: its sockets are closed either way)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rpartition(")")[2].split()[0] == "Z"
