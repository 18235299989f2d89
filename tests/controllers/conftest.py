"""A cluster of its own for controller tests (made as the scheduler tests make theirs), the controller manager
in process, and helpers that play the agent's part where a test needs pods Ready or finished (written through
the API)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine
from datetime import UTC, datetime
from typing import Any

import pytest

from controlplane.api.objects import from_manifest
from controlplane.api.pb import core_pb2
from controlplane.client.client import ApiClient
from controlplane.controllers.config import ControllerManagerConfig
from controlplane.controllers.manager import ControllerManager
from tests.scheduler import conftest as scheduler_fixtures

# The scheduler tests' own cluster (etcd + API server per module) and client, hollow nodes and an
# in-process scheduler: a whole cluster without processes, for rollout tests.
cluster = scheduler_fixtures.cluster
client = scheduler_fixtures.client
hollow = scheduler_fixtures.hollow
start_scheduler = scheduler_fixtures.start_scheduler


@pytest.fixture
async def namespace(client: ApiClient) -> str:
    name = f"c-{uuid.uuid4().hex[:8]}"
    await client.create(from_manifest({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}))
    return name


StartManager = Callable[..., Coroutine[Any, Any, ControllerManager]]


@pytest.fixture
async def start_manager(client: ApiClient) -> AsyncIterator[StartManager]:
    """``await start_manager(["replicaset", ...], **config)``: controllers running in process until the test ends."""
    running: list[asyncio.Task[None]] = []

    async def start(names: list[str], **config: Any) -> ControllerManager:
        manager = ControllerManager(client, ControllerManagerConfig(**config), names, "test")
        running.append(asyncio.create_task(manager.run(), name="controller-manager"))
        await asyncio.wait_for(manager.started.wait(), 30)
        return manager

    yield start
    for task in running:
        task.cancel()
    await asyncio.gather(*running, return_exceptions=True)


def _stamp() -> Any:
    from google.protobuf.timestamp_pb2 import Timestamp

    ts = Timestamp()
    ts.FromDatetime(datetime.now(UTC).replace(microsecond=0))
    return ts


async def set_pod_state(
    client: ApiClient, pod: core_pb2.Pod, phase: str, *, ready: bool = False, node: str = ""
) -> None:
    """Write a pod's status as an agent would (phase, Ready condition)."""
    for _ in range(10):
        current = await client.get(core_pb2.Pod, pod.metadata.name, pod.metadata.namespace)
        current.status.phase = phase
        del current.status.conditions[:]
        cond = current.status.conditions.add(type="Ready", status="True" if ready else "False")
        cond.last_transition_time.CopyFrom(_stamp())
        if node:
            current.status.host_ip = current.status.pod_ip = node
        try:
            await client.update_status(current)
            return
        except Exception:  # conflict with a controller's write: read again
            await asyncio.sleep(0.05)
    raise AssertionError(f"could not set the state of pod {pod.metadata.name}")


async def pods_of(client: ApiClient, namespace: str, *, active_only: bool = True) -> list[core_pb2.Pod]:
    """The namespace's pods (by default only those not being deleted)."""
    pods = (await client.list(core_pb2.Pod, namespace)).items
    if active_only:
        pods = [p for p in pods if not p.metadata.HasField("deletion_timestamp")]
    return pods
