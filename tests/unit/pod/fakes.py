"""Small fakes for the pod runtime's unit tests: processes that end when told (or at once), a recorder, a
sleep that records instead of waiting. No etcd, no API server, no real process."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from google.protobuf.message import Message

from controlplane.api.pb import core_pb2
from nodeagent.shimspec import ShimSpec, ShimStarted, Termination, now_rfc3339


class FakeProcess:
    """A container instance: running until ``finish`` or a signal it does not ignore."""

    def __init__(self, pid: int, *, starts: bool = True, ignore_term: bool = False) -> None:
        self.shim_pid = pid
        self.shim_start = 1000 + pid
        self.ignore_term = ignore_term
        self.signals: list[int] = []
        self._ended = asyncio.Event()
        self._termination: Termination | None = None
        self._started = ShimStarted(pid + 1, now_rfc3339()) if starts else None
        if not starts:
            self.finish(128, reason="StartError", message="sh: not found", started=False)

    @property
    def started(self) -> ShimStarted | None:
        return self._started

    def running(self) -> bool:
        return not self._ended.is_set()

    def finish(self, code: int, *, sig: int = 0, reason: str = "", message: str = "", started: bool = True) -> None:
        if self._ended.is_set():
            return
        why = reason or ("Completed" if code == 0 else "Error")
        self._termination = Termination(code, sig, why, message, now_rfc3339(), started=started)
        self._ended.set()

    def signal_group(self, sig: int) -> None:
        self.signals.append(sig)
        if sig == signal.SIGKILL or (sig == signal.SIGTERM and not self.ignore_term):
            self.finish(128 + sig, sig=sig)

    async def wait_started(self, timeout: float = 10.0) -> bool:
        return self._started is not None

    async def wait_exit(self, poll: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._ended.wait(), poll)

    async def wait(self, poll: float = 0.2) -> Termination:
        await self._ended.wait()
        assert self._termination is not None
        return self._termination


@dataclass
class FakeProcesses:
    """Starts FakeProcesses; ``exits`` scripts what each successive start does (an exit code at once, or None:
    keep running)."""

    exits: list[int | None] = field(default_factory=list)
    started: list[ShimSpec] = field(default_factory=list)
    processes: list[FakeProcess] = field(default_factory=list)
    adoptable: dict[int, FakeProcess] = field(default_factory=dict)
    on_start: Callable[[FakeProcess], None] | None = None

    def start(self, spec: ShimSpec) -> FakeProcess:
        self.started.append(spec)
        proc = FakeProcess(100 + len(self.started))
        self.processes.append(proc)
        code = self.exits.pop(0) if self.exits else None
        if code is not None:
            proc.finish(code)
        if self.on_start is not None:
            self.on_start(proc)
        return proc

    def adopt(self, shim_pid: int, shim_start: int, state_dir: Path) -> FakeProcess:
        proc = self.adoptable.get(shim_pid)
        if proc is None:
            proc = FakeProcess(shim_pid)
            proc.finish(137, sig=9)
        return proc


@dataclass
class FakeRecorder:
    events: list[tuple[str, str, str]] = field(default_factory=list)

    def event(self, obj: Message, type_: str, reason: str, message: str) -> None:
        self.events.append((type_, reason, message))

    def reasons(self) -> list[str]:
        return [r for _, r, _ in self.events]


@dataclass
class RecordedSleep:
    """Records every delay asked for and returns at once (yielding to the loop)."""

    delays: list[float] = field(default_factory=list)

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)
        await asyncio.sleep(0)


def container(name: str = "main", **fields: object) -> core_pb2.Container:
    command = fields.pop("command", ["server"])
    c = core_pb2.Container(name=name, command=command)  # type: ignore[arg-type]
    for key, value in fields.items():
        setattr(c, key, value)
    return c


def pod(*containers: core_pb2.Container, restart_policy: str = "Always") -> core_pb2.Pod:
    p = core_pb2.Pod(api_version="v1", kind="Pod")
    p.metadata.name, p.metadata.namespace, p.metadata.uid = "web", "default", "uid-1"
    p.spec.restart_policy = restart_policy
    p.spec.containers.extend(containers or [container()])
    return p
