"""Probe handlers against real sockets and processes, and the runner's thresholds."""

from __future__ import annotations

import asyncio
import http.server
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from controlplane.api.objects import from_manifest
from controlplane.api.pb import core_pb2
from nodeagent.probes import ProbeRunner, check
from tests.helpers import eventually


def probe(spec: dict[str, object]) -> core_pb2.Probe:
    """A Probe from its manifest form (through a Pod, as the API server would parse it)."""
    pod = from_manifest(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "p"},
            "spec": {"containers": [{"name": "c", "command": ["true"], "livenessProbe": spec}]},
        }
    )
    assert isinstance(pod, core_pb2.Pod)
    return pod.spec.containers[0].liveness_probe


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        code = 200 if self.path == "/healthz" and self.headers.get("X-Check") == "yes" else 500
        self.send_response(code)
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def http_port() -> Iterator[int]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield int(server.server_address[1])
    server.shutdown()
    server.server_close()


async def test_http_get_checks_status_path_headers_and_named_ports(http_port: int) -> None:
    good = probe({"httpGet": {"path": "/healthz", "port": "web", "httpHeaders": [{"name": "X-Check", "value": "yes"}]}})
    assert await check(good, host="127.0.0.1", ports={"web": http_port}, env={}, cwd="/") == (True, "")
    bad = probe({"httpGet": {"path": "/other", "port": http_port}})
    ok, message = await check(bad, host="127.0.0.1", ports={}, env={}, cwd="/")
    assert not ok and "statuscode: 500" in message


async def test_tcp_socket_succeeds_on_a_listener_and_fails_on_a_closed_port() -> None:
    server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    listening = probe({"tcpSocket": {"port": port}})
    assert (await check(listening, host="127.0.0.1", ports={}, env={}, cwd="/"))[0]
    server.close()
    await server.wait_closed()
    ok, message = await check(listening, host="127.0.0.1", ports={}, env={}, cwd="/")
    assert not ok and "ConnectionRefused" in message


async def test_exec_uses_the_exit_code_the_environment_and_the_timeout(tmp_path: Path) -> None:
    env = {"PATH": os.environ["PATH"], "WANT": "yes"}
    passing = probe({"exec": {"command": ["sh", "-c", 'test "$WANT" = yes && test -d sub']}, "timeoutSeconds": 5})
    (tmp_path / "sub").mkdir()
    assert await check(passing, host="", ports={}, env=env, cwd=str(tmp_path)) == (True, "")
    failing = probe({"exec": {"command": ["sh", "-c", "echo broken; exit 3"]}})
    ok, message = await check(failing, host="", ports={}, env=env, cwd=str(tmp_path))
    assert not ok and message == "exit code 3: broken"
    slow = probe({"exec": {"command": ["sleep", "30"]}, "timeoutSeconds": 1})
    ok, message = await check(slow, host="", ports={}, env=env, cwd=str(tmp_path))
    assert not ok and "timed out after 1s" in message


async def test_the_runner_flips_only_after_the_thresholds(tmp_path: Path) -> None:
    flag = tmp_path / "healthy"
    spec = probe(
        {
            "exec": {"command": ["test", "-f", str(flag)]},
            "periodSeconds": 1,
            "successThreshold": 2,
            "failureThreshold": 2,
        }
    )
    changes: list[bool] = []
    successes_at_flip: list[int] = []

    def on_change(ok: bool, message: str) -> None:
        changes.append(ok)
        successes_at_flip.append(runner._successes)

    runner = ProbeRunner(
        "readiness",
        spec,
        on_change,
        host="",
        ports={},
        env={"PATH": os.environ["PATH"]},
        cwd=str(tmp_path),
        initial=False,
    )
    task = asyncio.create_task(runner.run())
    try:
        flag.touch()
        await eventually(lambda: changes == [True], timeout=10)
        assert successes_at_flip == [2]  # one success was not enough
        flag.unlink()
        await eventually(lambda: changes == [True, False], timeout=10)
        assert runner.result is False
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
