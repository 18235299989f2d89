"""``navarch-controller-manager`` as a process: flags, the Status service, leader election, and the crash
test (kill -9 in the middle of a scale-up, start again: exactly the desired pods, none orphaned)."""

from __future__ import annotations

import asyncio
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from controlplane.api.objects import from_manifest
from controlplane.api.pb import apps_pb2, controllermanager_pb2, controllermanager_pb2_grpc, core_pb2
from controlplane.apiserver.main import ApiServer
from controlplane.client.client import ApiClient
from controlplane.controllers.ownership import controller_of
from tests.controllers.conftest import pods_of
from tests.helpers import eventually_async

BIN = Path(sys.executable).parent / "navarch-controller-manager"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ManagerProcess:
    """One controller-manager process and its Status endpoint."""

    def __init__(self, server: str, log: Path, *extra: str) -> None:
        self.port = free_port()
        self.log = log
        with open(log, "ab") as out:
            self.proc = subprocess.Popen(
                [str(BIN), "--server", server, "--listen", f"127.0.0.1:{self.port}", *extra],
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    async def status(self) -> controllermanager_pb2.ControllerManagerStatus | None:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{self.port}") as channel:
            stub = controllermanager_pb2_grpc.ControllerManagerStub(channel)
            try:
                return await stub.Status(controllermanager_pb2.ControllerManagerStatusRequest(), timeout=2)  # type: ignore[no-any-return]
            except grpc.aio.AioRpcError:
                return None

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.proc.wait(timeout=30)


@pytest.fixture
def managers(cluster: ApiServer, tmp_path: Path) -> Iterator[list[ManagerProcess]]:
    started: list[ManagerProcess] = []
    yield started
    for m in started:
        m.stop(signal.SIGKILL)


def test_unknown_controller_is_refused_by_name() -> None:
    result = subprocess.run([str(BIN), "--controllers", "*,-job,bogus"], capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert "unknown controller 'bogus'" in result.stderr and "replicaset" in result.stderr


def replicaset(name: str, namespace: str, replicas: int) -> apps_pb2.ReplicaSet:
    return from_manifest(  # type: ignore[return-value]
        {
            "apiVersion": "apps/v1",
            "kind": "ReplicaSet",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": {"app": name}},
                "template": {
                    "metadata": {"labels": {"app": name}},
                    "spec": {"containers": [{"name": "main", "command": ["sleep", "3600"]}]},
                },
            },
        }
    )


async def test_status_reports_leader_and_controllers_and_sigterm_stops_cleanly(
    cluster: ApiServer, client: ApiClient, namespace: str, managers: list[ManagerProcess], tmp_path: Path
) -> None:
    server = f"127.0.0.1:{cluster.port}"
    m = ManagerProcess(
        server, tmp_path / "cm.log", "--leader-elect", "--lease-duration", "3", "--controllers", "*,-job"
    )
    managers.append(m)

    async def leading() -> bool:
        s = await m.status()
        return s is not None and s.leading

    await eventually_async(leading, timeout=30)
    await client.create(replicaset("web", namespace, 2))
    await eventually_async(lambda: _count(client, namespace, 2), timeout=20)
    status = await m.status()
    assert status is not None and status.leader == status.identity
    names = [c.name for c in status.controllers]
    assert "replicaset" in names and "deployment" in names and "job" not in names
    rs = next(c for c in status.controllers if c.name == "replicaset")
    assert rs.syncs >= 1 and rs.workers == 5
    assert m.stop(signal.SIGTERM) == 0


DESIRED = 100


async def _count(client: ApiClient, namespace: str, n: int) -> bool:
    return len(await pods_of(client, namespace)) == n


async def test_kill_9_during_scale_up_then_restart_ends_with_exactly_the_desired_pods(
    cluster: ApiServer, client: ApiClient, namespace: str, managers: list[ManagerProcess], tmp_path: Path
) -> None:
    server = f"127.0.0.1:{cluster.port}"
    m = ManagerProcess(server, tmp_path / "cm-1.log", "--controllers", "replicaset,garbagecollector")
    managers.append(m)

    async def running() -> bool:
        s = await m.status()
        return s is not None and all(c.workers for c in s.controllers)

    await eventually_async(running, timeout=30)
    rs = await client.create(replicaset("web", namespace, 0))
    await client.patch(apps_pb2.ReplicaSet, "web", {"spec": {"replicas": DESIRED}}, namespace)

    async def partway() -> bool:
        return len(await pods_of(client, namespace)) >= 5

    await eventually_async(partway, timeout=20)
    m.stop(signal.SIGKILL)
    await asyncio.sleep(1)  # creates the dead process had in flight land (or not) now
    created_before = len(await pods_of(client, namespace))
    # The kill must have landed mid scale-up, else the test proves nothing about a restart resuming one
    # (plausible bug hidden: a restarted manager that re-creates pods the dead one created).
    assert 5 <= created_before < DESIRED, f"killed with {created_before} of {DESIRED} pods"
    again = ManagerProcess(server, tmp_path / "cm-2.log", "--controllers", "replicaset,garbagecollector")
    managers.append(again)
    await eventually_async(lambda: _count(client, namespace, DESIRED), timeout=60)

    async def status_observed() -> bool:
        got = await client.get(apps_pb2.ReplicaSet, "web", namespace)
        return got.status.replicas == DESIRED

    await eventually_async(status_observed, timeout=30)
    pods = (await client.list(core_pb2.Pod, namespace)).items
    assert len(pods) == DESIRED, f"{len(pods)} pods (had {created_before} when killed)"
    for p in pods:
        ref = controller_of(p)
        assert ref is not None and ref.uid == rs.metadata.uid, f"pod {p.metadata.name} is not owned by the ReplicaSet"
