"""Workloads end to end: a cluster of its own (etcd, API server with short default tolerations), the real
``navarch-scheduler`` and ``navarch-controller-manager`` processes, and real agents on distinct loopback
addresses running real processes."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any

import pytest

from controlplane.api.errors import NotFoundError
from controlplane.api.objects import from_manifest
from controlplane.api.pb import core_pb2
from controlplane.apiserver.main import ApiServer
from controlplane.client.client import ApiClient
from controlplane.launcher.etcd import EtcdCluster
from tests.conftest import api_config
from tests.e2e.conftest import AgentProcess, StartAgent

BIN = Path(sys.executable).parent
TOLERATION_SECONDS = 2
"""Default toleration of the not-ready/unreachable taints in this cluster (Kubernetes: 300, ours: 30)."""


@pytest.fixture(scope="module")
async def apiserver() -> AsyncIterator[ApiServer]:
    """This module's own etcd and API server (overrides the session's)."""
    with EtcdCluster(1) as etcd:
        server = ApiServer(
            api_config(
                etcd.endpoints,
                default_not_ready_toleration_seconds=TOLERATION_SECONDS,
                default_unreachable_toleration_seconds=TOLERATION_SECONDS,
            )
        )
        await server.start()
        try:
            yield server
        finally:
            await server.stop()


@pytest.fixture(scope="module")
def control_plane(apiserver: ApiServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The scheduler and controller manager as processes (fast node monitoring, quick Job retries)."""
    logs = tmp_path_factory.mktemp("control-plane")
    server = f"127.0.0.1:{apiserver.port}"
    commands = {
        "scheduler": [str(BIN / "navarch-scheduler"), "--server", server, "--listen", "127.0.0.1:0"],
        "controller-manager": [
            str(BIN / "navarch-controller-manager"),
            "--server",
            server,
            "--listen",
            "127.0.0.1:0",
            "--node-monitor-grace-period",
            "4s",
            "--node-monitor-period",
            "1s",
            "--node-startup-grace-period",
            "10s",
            "--job-backoff",
            "0.5s",
            "--node-eviction-rate",
            "10",
            # Autoscaling tests: evaluate often, and forget a recommendation quickly (defaults 15s and 5m).
            "--horizontal-pod-autoscaler-sync-period",
            "2s",
            "--horizontal-pod-autoscaler-downscale-stabilization",
            "15s",
        ],
    }
    procs = []
    for name, cmd in commands.items():
        with open(logs / f"{name}.log", "ab") as out:
            procs.append(subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT))
    yield logs
    for p in procs:
        p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(timeout=15)
        except subprocess.TimeoutExpired:
            p.kill()


@pytest.fixture
async def namespace(client: ApiClient) -> str:
    name = f"w-{uuid.uuid4().hex[:8]}"
    await client.create(from_manifest({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}))
    return name


StartAgents = Callable[..., Coroutine[Any, Any, list[AgentProcess]]]


@pytest.fixture
async def agents(start_agent: StartAgent, control_plane: Path, client: ApiClient) -> AsyncIterator[StartAgents]:
    """``await agents(n, *flags)``: n more agents, each on its own loopback address (127.0.0.2, .3, ...); their
    Nodes are deleted after the test so that later tests see only their own."""
    count = 0
    all_started: list[AgentProcess] = []

    async def start(n: int, *extra: str) -> list[AgentProcess]:
        nonlocal count
        started = []
        for _ in range(n):
            count += 1
            started.append(await start_agent(*extra, node_ip=f"127.0.0.{count + 1}"))
        all_started.extend(started)
        return started

    yield start
    for a in all_started:
        with contextlib.suppress(NotFoundError):
            await client.delete(core_pb2.Node, a.node)


def processes(marker: str) -> list[int]:
    """Pids of processes whose command line is exactly ``marker``."""
    out = subprocess.run(["pgrep", "-fx", marker], capture_output=True, text=True, check=False)
    return [int(p) for p in out.stdout.split()]


async def wait_processes(marker: str, count: int, timeout: float = 60.0) -> list[int]:
    """Wait until exactly ``count`` processes run ``marker``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    delay = 0.05
    while True:
        pids = processes(marker)
        if len(pids) == count:
            return pids
        if loop.time() > deadline:
            raise AssertionError(f"expected {count} processes '{marker}', found {len(pids)}")
        await asyncio.sleep(delay)
        delay = min(delay * 2, 0.5)
