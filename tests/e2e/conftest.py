"""Real node agents (subprocesses) against the session's API server, running real processes."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from controlplane.api.objects import from_manifest
from controlplane.api.pb import core_pb2
from controlplane.apiserver.main import ApiServer
from controlplane.client.client import ApiClient, ClientConfig
from tests.helpers import eventually

AGENT = str(Path(sys.executable).parent / "navarch-agent")


@dataclass
class AgentProcess:
    """One navarch-agent process and where it keeps its data."""

    node: str
    data_dir: Path
    server: str
    extra: list[str] = field(default_factory=list)
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start (or restart) the agent process."""
        log = open(self.data_dir.parent / f"{self.node}.log", "ab")  # noqa: SIM115 - handed to the child
        self.proc = subprocess.Popen(
            [
                AGENT,
                "--server",
                self.server,
                "--node-name",
                self.node,
                "--node-ip",
                "127.0.0.1",
                "--data-dir",
                str(self.data_dir),
                "--listen",
                "127.0.0.1:0",
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
        return (self.data_dir.parent / f"{self.node}.log").read_text(errors="replace")


@pytest.fixture
async def client(apiserver: ApiServer) -> AsyncIterator[ApiClient]:
    c = ApiClient(ClientConfig(endpoints=[f"127.0.0.1:{apiserver.port}"], timeout=10))
    yield c
    await c.close()


@pytest.fixture
async def agent(apiserver: ApiServer, tmp_path: Path, client: ApiClient) -> AsyncIterator[AgentProcess]:
    """A fresh node with its own agent; every process it started is gone after the test."""
    node = f"node-{uuid.uuid4().hex[:8]}"
    a = AgentProcess(node, tmp_path / "agent", f"127.0.0.1:{apiserver.port}")
    a.start()

    async def registered() -> bool:
        try:
            n = await client.get(core_pb2.Node, node)
        except Exception:
            return False
        return any(c.type == "Ready" and c.status == "True" for c in n.status.conditions)

    try:
        await eventually_async(registered, timeout=30)
        yield a
    finally:
        a.kill(signal.SIGKILL)
        _kill_leftovers(a.data_dir)


def _kill_leftovers(data_dir: Path) -> None:
    """Kill every shim the agent left (tests must not leak processes)."""
    out = subprocess.run(["pgrep", "-f", f"nodeagent.shim {data_dir}"], capture_output=True, text=True, check=False)
    for pid in out.stdout.split():
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(int(pid), signal.SIGKILL)


async def eventually_async(condition: Callable[[], Any], timeout: float = 20.0) -> None:
    """Like ``eventually`` for async conditions."""
    delay = 0.02
    async with asyncio.timeout(timeout):
        while not await condition():
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.3)


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


__all__ = ["AgentProcess", "eventually", "eventually_async", "pod_manifest", "wait_pod"]
