"""A cluster of its own for the scheduler tests (its own etcd and API server, so the session's other nodes
and pods do not take part), hollow nodes in process, and in-process schedulers."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest

from controlplane.api.errors import NotFoundError
from controlplane.apiserver.main import ApiServer
from controlplane.client.client import ApiClient, ClientConfig
from controlplane.launcher.etcd import EtcdCluster
from controlplane.scheduler.config import SchedulerConfig
from controlplane.scheduler.scheduler import Scheduler
from nodeagent.config import AgentConfig
from nodeagent.hollow import HollowNodes
from tests.conftest import api_config


@pytest.fixture(scope="module")
async def cluster() -> AsyncIterator[ApiServer]:
    """A fresh etcd and API server for one test module."""
    with EtcdCluster(1) as etcd:
        server = ApiServer(api_config(etcd.endpoints))
        await server.start()
        try:
            yield server
        finally:
            await server.stop()


@pytest.fixture
async def client(cluster: ApiServer) -> AsyncIterator[ApiClient]:
    c = ApiClient(ClientConfig(endpoints=[f"127.0.0.1:{cluster.port}"], timeout=15))
    yield c
    await c.close()


@pytest.fixture
async def namespace(client: ApiClient) -> str:
    from controlplane.api.objects import from_manifest

    name = f"s-{uuid.uuid4().hex[:8]}"
    await client.create(from_manifest({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}))
    return name


StartHollow = Callable[..., Coroutine[Any, Any, HollowNodes]]


@pytest.fixture
async def hollow(cluster: ApiServer, client: ApiClient, tmp_path: Path) -> AsyncIterator[StartHollow]:
    """``await hollow(count, capacity=..., labels=..., taints=[(k, v, effect)])``: hollow nodes, registered;
    stopped and their Nodes deleted after the test."""
    running: list[tuple[HollowNodes, asyncio.Task[None]]] = []

    async def start(
        count: int,
        *,
        capacity: dict[str, str] | None = None,
        labels: dict[str, str] | None = None,
        taints: list[tuple[str, str, str]] | None = None,
        shared_watch: bool = False,
    ) -> HollowNodes:
        base = AgentConfig(
            servers=[f"127.0.0.1:{cluster.port}"],
            node_name="",
            node_ip="127.0.0.1",
            data_dir=tmp_path,
            labels=labels or {},
            taints=taints or [],
            capacity=capacity or {"cpu": "4", "memory": "8Gi", "pods": "110"},
            reserved={},
            lease_interval=2.0,
        )
        nodes = HollowNodes(client, base, count, f"h{uuid.uuid4().hex[:6]}-", shared_watch=shared_watch)
        task = asyncio.create_task(nodes.run(), name="hollow")
        running.append((nodes, task))
        await asyncio.wait_for(nodes.registered.wait(), 30)
        return nodes

    yield start
    from controlplane.api.pb import core_pb2

    for nodes, task in running:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        for name in nodes.names:
            with contextlib.suppress(NotFoundError):
                await client.delete(core_pb2.Node, name)


StartScheduler = Callable[..., Coroutine[Any, Any, Scheduler]]


@pytest.fixture
async def start_scheduler(client: ApiClient) -> AsyncIterator[StartScheduler]:
    """``await start_scheduler(name, schedule=True)``: an in-process scheduler for pods with that
    schedulerName (informers always; the scheduling loop if ``schedule``)."""
    tasks: list[asyncio.Task[None]] = []

    async def start(name: str, *, schedule: bool = True, **config: Any) -> Scheduler:
        s = Scheduler(client, SchedulerConfig(scheduler_name=name, **config), f"test-{name}")
        tasks.append(asyncio.create_task(s.run_informers()))
        if schedule:
            tasks.append(asyncio.create_task(s.schedule_forever()))
        await s.nodes.wait_for_sync(20)
        await s.pods.wait_for_sync(20)
        return s

    yield start
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
