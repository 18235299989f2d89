"""Shared fixtures: a real etcd (session), a real API server in-process on a free port, a gRPC stub.

Tiers are marked by folder: tests/unit -> unit, tests/integration -> integration, and so on.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import grpc.aio
import pytest
from hypothesis import settings

from controlplane import transport
from controlplane.apiserver.main import ApiServer, ApiServerConfig
from controlplane.launcher.etcd import EtcdCluster
from controlplane.storage import EtcdConfig
from tests.helpers import Api, api_stub, create_namespace

_TIERS = ("unit", "integration", "e2e", "multihost")
_FOLDER_TIERS = {
    "cli": "integration",  # real API servers (and agents)
    "security": "integration",
    "readme": "integration",  # fresh virtual environments, the README's own commands
}

# CI runs the property tests with a fixed seed so that a run is reproducible; locally they explore.
settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        parts = Path(str(item.fspath)).parts
        for tier in _TIERS:
            if tier in parts:
                item.add_marker(getattr(pytest.mark, tier))
        for folder, tier in _FOLDER_TIERS.items():
            if folder in parts:
                item.add_marker(getattr(pytest.mark, tier))


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--etcd",
        choices=("process", "container"),
        default="process",
        help="run the session's etcd as a local process (default) or in Docker through testcontainers",
    )


@pytest.fixture(scope="session")
def etcd_cluster(request: pytest.FixtureRequest) -> Iterator[EtcdCluster]:
    """One etcd member for the whole session (a container with --etcd=container, where Docker runs)."""
    if request.config.getoption("--etcd") == "container":
        from tests.etcd_container import ContainerEtcd, docker_unavailable_reason

        reason = docker_unavailable_reason()
        if reason is not None:
            pytest.skip(f"--etcd=container: {reason}")
        container = ContainerEtcd()
        try:
            yield container  # type: ignore[misc]  # has the endpoints the fixtures use
        finally:
            container.stop()
        return
    with EtcdCluster(1) as cluster:
        yield cluster


def api_config(endpoints: list[str], **overrides: object) -> ApiServerConfig:
    """An API server config for tests: port 0 and short intervals."""
    settings: dict[str, object] = {
        "etcd": EtcdConfig(endpoints=endpoints, request_timeout=5.0),
        "listen": "127.0.0.1:0",
        "progress_interval": 0.5,
        "bookmark_interval": 1.0,
    }
    settings.update(overrides)
    return ApiServerConfig(**settings)  # type: ignore[arg-type]


@pytest.fixture(scope="session")
async def apiserver(etcd_cluster: EtcdCluster) -> AsyncIterator[ApiServer]:
    """An API server shared by the session's tests (each test works in its own namespace)."""
    server = ApiServer(api_config(etcd_cluster.endpoints))
    await server.start()
    yield server
    await server.stop()


@pytest.fixture(scope="session")
async def channel(apiserver: ApiServer) -> AsyncIterator[grpc.aio.Channel]:
    """A channel to the session API server."""
    ch = transport.make_channel([f"127.0.0.1:{apiserver.port}"])
    yield ch
    await ch.close()


@pytest.fixture
def api(channel: grpc.aio.Channel) -> Api:
    """The Api stub."""
    return api_stub(channel)


@pytest.fixture
async def namespace(api: Api) -> str:
    """A fresh namespace for one test."""
    name = f"t-{uuid.uuid4().hex[:10]}"
    await create_namespace(api, name)
    return name
