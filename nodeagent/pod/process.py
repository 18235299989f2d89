"""The seam between the pod runtime and real processes: what a running container looks like to a runner,
and what starts and adopts one. ``ShimProcesses`` is the real thing (the fork server and shims of
nodeagent/supervisor.py); unit tests give the runtime a fake with the same shape."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from nodeagent import supervisor
from nodeagent.forkserver import ForkServer
from nodeagent.shimspec import ShimSpec, ShimStarted, Termination


class Process(Protocol):
    """One container instance's process tree, through its shim."""

    shim_pid: int
    shim_start: int

    @property
    def started(self) -> ShimStarted | None: ...

    def running(self) -> bool: ...

    def signal_group(self, sig: int) -> None: ...

    async def wait_started(self, timeout: float = 10.0) -> bool: ...

    async def wait_exit(self, poll: float) -> None: ...

    async def wait(self, poll: float = 0.2) -> Termination: ...


class Processes(Protocol):
    """Starts container instances and re-attaches to ones an earlier agent started."""

    def start(self, spec: ShimSpec) -> Process: ...

    def adopt(self, shim_pid: int, shim_start: int, state_dir: Path) -> Process: ...


class ShimProcesses:
    """Real shims, forked by the agent's fork server."""

    def __init__(self, launcher: ForkServer) -> None:
        self.launcher = launcher

    def start(self, spec: ShimSpec) -> Process:
        return supervisor.start(spec, self.launcher)

    def adopt(self, shim_pid: int, shim_start: int, state_dir: Path) -> Process:
        return supervisor.adopt(shim_pid, shim_start, state_dir)
