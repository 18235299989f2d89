"""Real node agents (subprocesses) against the session's API server, running real processes."""

from __future__ import annotations

import functools
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from controlplane.api.objects import from_manifest
from controlplane.api.pb import core_pb2
from controlplane.apiserver.main import ApiServer
from controlplane.client.client import ApiClient, ClientConfig
from controlplane.launcher import processes
from nodeagent.cgroups import CgroupDriver
from tests.cli.conftest import cli, cli_env
from tests.helpers import eventually, eventually_async, node_ready

AGENT = str(Path(sys.executable).parent / "navarch-agent")


@dataclass
class AgentProcess:
    """One navarch-agent process and where it keeps its data."""

    node: str
    data_dir: Path
    server: str
    extra: list[str] = field(default_factory=list)
    node_ip: str = "127.0.0.1"
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start (or restart) the agent process."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.data_dir / "agent.log", "ab")  # noqa: SIM115 - handed to the child
        self.proc = subprocess.Popen(
            [
                AGENT,
                "--server",
                self.server,
                "--node-name",
                self.node,
                "--node-ip",
                self.node_ip,
                "--data-dir",
                str(self.data_dir),
                "--listen",
                f"{self.node_ip}:0",
                # Workloads here write to the test's temporary files, so they run as the test's user; the
                # unprivileged default has its own tests (tests/e2e/test_workload_identity.py).
                "--run-as-user",
                str(os.geteuid()),
                "--run-as-group",
                str(os.getegid()),
                "--lease-interval",
                "1",
                "--backoff-initial",
                "0.5",
                "--backoff-max",
                "4",
                *self.extra,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Stop the agent process with a signal and reap it."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(timeout=30)

    def log_text(self) -> str:
        """The agent's log so far."""
        return (self.data_dir / "agent.log").read_text(errors="replace")


@pytest.fixture
async def client(apiserver: ApiServer) -> AsyncIterator[ApiClient]:
    c = ApiClient(ClientConfig(endpoints=[f"127.0.0.1:{apiserver.port}"], timeout=10))
    yield c
    await c.close()


StartAgent = Callable[..., Coroutine[Any, Any, AgentProcess]]


@pytest.fixture
async def start_agent(apiserver: ApiServer, tmp_path: Path, client: ApiClient) -> AsyncIterator[StartAgent]:
    """``await start_agent(*flags, node_ip=...)``: a fresh node with its own agent, Ready; every process it
    started is gone after the test."""
    started: list[AgentProcess] = []

    async def start(*extra: str, node_ip: str = "127.0.0.1") -> AgentProcess:
        node = f"node-{uuid.uuid4().hex[:8]}"
        a = AgentProcess(node, tmp_path / node, f"127.0.0.1:{apiserver.port}", list(extra), node_ip)
        started.append(a)
        a.start()

        await eventually_async(functools.partial(node_ready, client, node), timeout=30)
        return a

    try:
        yield start
    finally:
        for a in started:
            a.kill(signal.SIGKILL)
            _kill_leftovers(a.data_dir)
            driver = CgroupDriver.detect(a.node)
            if driver is not None:
                await eventually_async(functools.partial(_no_processes, driver), timeout=10)
                driver.remove_all()


@pytest.fixture
async def agent(start_agent: StartAgent) -> AgentProcess:
    """One agent (small log files, so that rotation happens in tests; quick volume refreshes)."""
    return await start_agent("--log-max-bytes", "4096", "--log-keep", "2", "--volume-refresh", "0.5")


def _kill_leftovers(data_dir: Path) -> None:
    """Kill every shim the agent left (tests must not leak processes)."""
    processes.kill_workloads(data_dir)


async def _no_processes(driver: CgroupDriver) -> bool:
    """Whether every cgroup of the driver's node is empty (killed processes take a moment to leave)."""
    for root in driver.roots.values():
        for procs in (root / driver.prefix).rglob("cgroup.procs"):
            if procs.read_text().strip():
                return False
    return True


def pod_manifest(name: str, namespace: str, node: str, command: list[str], **spec: Any) -> core_pb2.Pod:
    """A Pod bound to ``node`` with one container running ``command``."""
    container = {"name": "main", "command": command, **spec.pop("container", {})}
    doc = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"nodeName": node, "containers": [container], **spec},
    }
    pod = from_manifest(doc)
    assert isinstance(pod, core_pb2.Pod)
    return pod


async def wait_pod(
    client: ApiClient, namespace: str, name: str, condition: Callable[[core_pb2.Pod], bool], timeout: float = 30.0
) -> core_pb2.Pod:
    """Poll a pod until ``condition`` holds; returns it."""
    found: list[core_pb2.Pod] = []

    async def check() -> bool:
        pod = await client.get(core_pb2.Pod, name, namespace)
        try:
            matched = condition(pod)
        except IndexError:  # no container status yet
            matched = False
        if matched:
            found.append(pod)
        return matched

    try:
        await eventually_async(check, timeout)
    except TimeoutError:
        pod = await client.get(core_pb2.Pod, name, namespace)
        raise AssertionError(f"pod {name} never reached the condition; last status: {pod.status}") from None
    return found[0]


def container_log(agent: AgentProcess, pod: core_pb2.Pod, container: str = "main") -> str:
    """Everything the agent still keeps of a container's log (previous and current instance, rotated files)."""
    cdir = agent.data_dir / "pods" / pod.metadata.uid / "containers" / container

    def order(p: Path) -> tuple[int, int]:
        instance, _, rest = p.name.partition(".log")
        return int(instance), -int(rest[1:] or 0)

    files = sorted((f for f in cdir.glob("[0-9]*.log*")), key=order) if cdir.exists() else []
    return "".join(f.read_text(errors="replace") for f in files)


__all__ = [
    "AgentProcess",
    "StartAgent",
    "cli",
    "cli_env",
    "container_log",
    "eventually",
    "eventually_async",
    "pod_manifest",
    "wait_pod",
]
