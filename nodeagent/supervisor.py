"""Starting, watching, signalling and adopting container processes (through their shims).

A container's process group is its shim's pid: the shim is the session leader, the workload runs in its
group. A ``ContainerProcess`` is identified by (shim pid, shim start time) so that a recycled pid is never
mistaken for ours; ``adopt`` re-attaches to a shim left running by a previous agent.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nodeagent.shim import EXIT, STARTED, now_rfc3339, write_json


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
class ExitStatus:
    """How a container process ended."""

    exit_code: int
    signal: int
    reason: str
    message: str
    finished_at: str
    started: bool = True


@dataclass
class ContainerProcess:
    """A running (or finished) container, through its shim."""

    shim_pid: int
    shim_start: int
    state_dir: Path
    _popen: subprocess.Popen[bytes] | None = None

    @property
    def started(self) -> dict[str, Any] | None:
        """What the shim recorded at start (workload pid and time), if it got that far."""
        path = self.state_dir / STARTED
        try:
            data: dict[str, Any] = json.loads(path.read_text())
            return data
        except (OSError, ValueError):
            return None

    def running(self) -> bool:
        """Whether the shim (and so possibly the workload) is still there."""
        if self._popen is not None and self._popen.poll() is not None:
            return False
        return alive(self.shim_pid, self.shim_start)

    def signal_group(self, sig: int) -> None:
        """Send a signal to the whole process group (the shim ignores TERM/INT/HUP; the workload does not)."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            if alive(self.shim_pid, self.shim_start):
                os.killpg(self.shim_pid, sig)

    def exit_status(self) -> ExitStatus | None:
        """The recorded exit, if the shim wrote one."""
        try:
            data = json.loads((self.state_dir / EXIT).read_text())
        except (OSError, ValueError):
            return None
        return ExitStatus(**data)

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

    async def wait(self, poll: float = 0.2) -> ExitStatus:
        """Wait until the shim is gone; returns the exit status (SIGKILLed shims: 137 / signal 9)."""
        while self.running():
            await self._wait_exit(poll)
        if self._popen is not None:
            self._popen.wait()
        status = self.exit_status()
        if status is None:
            status = ExitStatus(137, signal.SIGKILL, "Error", "killed", now_rfc3339())
            with contextlib.suppress(OSError):
                write_json(self.state_dir / EXIT, status.__dict__)
        return status

    async def _wait_exit(self, poll: float) -> None:
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
            if self._popen is not None:
                self._popen.poll()  # reap our child so it does not linger as a zombie


def start(spec: dict[str, Any], state_dir: Path) -> ContainerProcess:
    """Start a container through a new shim (in its own session); returns at once."""
    state_dir.mkdir(parents=True, exist_ok=True)
    for stale in (STARTED, EXIT):
        (state_dir / stale).unlink(missing_ok=True)
    spec_path = state_dir / "spec.json"
    write_json(spec_path, {**spec, "state_dir": str(state_dir)})
    with open(state_dir / "shim.log", "ab") as shim_log:
        popen = subprocess.Popen(
            [sys.executable, "-m", "nodeagent.shim", str(spec_path)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=shim_log,
            start_new_session=True,
            close_fds=True,
            cwd="/",
            env={
                "PYTHONPATH": os.pathsep.join(p for p in sys.path if p),
                "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            },
        )
    start_time = process_start_time(popen.pid) or 0
    return ContainerProcess(popen.pid, start_time, state_dir, popen)


def adopt(shim_pid: int, shim_start: int, state_dir: Path) -> ContainerProcess:
    """Re-attach to a shim started by an earlier agent (it may have finished meanwhile)."""
    return ContainerProcess(shim_pid, shim_start, state_dir)
