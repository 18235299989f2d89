"""Starting, watching, signalling and adopting container processes (through their shims).

A container's process group is its shim's pid: the shim is the session leader, the workload runs in its
group. A ``ContainerProcess`` is identified by (shim pid, shim start time) so that a recycled pid is never
mistaken for ours; ``adopt`` re-attaches to a shim left running by a previous agent. Shims are forked by the
agent's fork server (nodeagent/forkserver.py), so no shim is the agent's child: a shim's end is seen through
a pidfd and how it ended is read from its ``exit.json``, the same for a shim this agent started and one it
adopted.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from dataclasses import dataclass
from pathlib import Path

from nodeagent.forkserver import ForkServer
from nodeagent.shimspec import EXIT, STARTED, ShimSpec, ShimStarted, Termination, now_rfc3339


def process_start_time(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (field 22 of /proc/PID/stat), or None if gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may contain spaces and parentheses: split after the last ')'.
    fields = stat[stat.rindex(")") + 2 :].split()
    return int(fields[19])


def alive(pid: int, start_time: int) -> bool:
    """Whether ``pid`` is still the process that started at ``start_time`` (and not a zombie)."""
    if process_start_time(pid) != start_time:
        return False
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


@dataclass
class ContainerProcess:
    """A running (or finished) container, through its shim."""

    shim_pid: int
    shim_start: int
    state_dir: Path

    @property
    def started(self) -> ShimStarted | None:
        """What the shim recorded at start (workload pid and time), if it got that far."""
        return ShimStarted.read(self.state_dir)

    def running(self) -> bool:
        """Whether the shim (and so possibly the workload) is still there."""
        return alive(self.shim_pid, self.shim_start)

    def signal_group(self, sig: int) -> None:
        """Send a signal to the whole process group (the shim ignores TERM/INT/HUP; the workload does not)."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            if alive(self.shim_pid, self.shim_start):
                os.killpg(self.shim_pid, sig)

    def exit_status(self) -> Termination | None:
        """The recorded exit, if the shim wrote one."""
        return Termination.read(self.state_dir)

    async def wait_started(self, timeout: float = 10.0) -> bool:
        """Wait until the shim has started the workload (True) or has given up or gone (False)."""
        delay = 0.005
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while loop.time() < deadline:
            if self.started is not None:
                return True
            if not self.running():
                return self.started is not None
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.1)
        return self.started is not None

    async def wait(self, poll: float = 0.2) -> Termination:
        """Wait until the shim is gone; returns the exit status (SIGKILLed shims: 137 / signal 9)."""
        while self.running():
            await self.wait_exit(poll)
        status = self.exit_status()
        if status is None:
            status = Termination(137, signal.SIGKILL, "Error", "killed", now_rfc3339())
            with contextlib.suppress(OSError):
                status.write(self.state_dir)
        return status

    async def wait_exit(self, poll: float) -> None:
        """Return when the shim exits, or after about ``poll`` seconds without a pidfd."""
        # A pidfd becomes readable when the process exits, child or not (Linux >= 5.3).
        try:
            fd = os.pidfd_open(self.shim_pid)
        except (OSError, AttributeError):
            await asyncio.sleep(poll)
            return
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()

        def wake() -> None:
            if not done.done():
                done.set_result(None)

        loop.add_reader(fd, wake)
        try:
            if alive(self.shim_pid, self.shim_start):
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(5.0):  # re-check now and then in case of a missed wake-up
                        await done
        finally:
            loop.remove_reader(fd)
            os.close(fd)


def start(spec: ShimSpec, launcher: ForkServer) -> ContainerProcess:
    """Start a container through a new shim (in its own session); returns at once."""
    state_dir = Path(spec.state_dir)
    state_dir.mkdir(parents=True, exist_ok=True)
    for stale in (STARTED, EXIT):
        (state_dir / stale).unlink(missing_ok=True)
    (state_dir / "spec.json").unlink(missing_ok=True)  # left by an older agent: it held the environment
    pid = launcher.start(state_dir, spec.dumps())
    return ContainerProcess(pid, process_start_time(pid) or 0, state_dir)


def adopt(shim_pid: int, shim_start: int, state_dir: Path) -> ContainerProcess:
    """Re-attach to a shim started by an earlier agent (it may have finished meanwhile)."""
    return ContainerProcess(shim_pid, shim_start, state_dir)
