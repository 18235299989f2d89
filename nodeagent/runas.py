"""Running a command for a pod as the pod's user: the one place that drops privileges for the agent.

``python -I -m nodeagent.runas UID GID GROUPS PAYLOAD_FD -- COMMAND...`` reads the command's environment and the
container's ``cgroup.procs`` files from the inherited file ``PAYLOAD_FD`` (JSON), joins those cgroups, drops to
the user and groups (UID -1: stays who it is), then execs the command with that environment.
The helper itself starts with an empty environment: a pod's ``LD_PRELOAD``, ``LD_LIBRARY_PATH`` or
``PYTHON*`` never reach a process that still has root's privileges, and its Secrets never appear on a
command line (``/proc/PID/cmdline`` is world-readable).

The agent uses this helper rather than ``subprocess``'s ``user=``/``group=``: those force a plain ``fork``
of the agent, and forking a process that runs gRPC's threads can crash the child before it reaches ``exec``.
This process is single-threaded. A command that cannot be run exits like a shell: 127 not found, 126 not
executable.

``command_as`` builds the invocation: for a command that runs as the agent's own user it is the command
itself (nothing to drop), else the helper with a memfd carrying the environment.
"""

from __future__ import annotations

import fcntl
import json
import os
import sys
import termios
from collections.abc import Sequence
from dataclasses import dataclass, field

from nodeagent.identity import RunAs

HELPER_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@dataclass
class Invocation:
    """What to hand to ``create_subprocess_exec``; ``close()`` once the process has started."""

    argv: list[str]
    env: dict[str, str]
    pass_fds: tuple[int, ...] = ()
    _fds: list[int] = field(default_factory=list)

    def close(self) -> None:
        for fd in self._fds:
            os.close(fd)
        self._fds.clear()


def command_as(
    run_as: RunAs | None,
    argv: list[str],
    env: dict[str, str],
    cgroups: Sequence[str] = (),
    *,
    tty: bool = False,
) -> Invocation:
    """How to run ``argv`` with ``env`` as ``run_as`` inside ``cgroups`` (the container's ``cgroup.procs``
    files). Without a user to switch to or groups to join: directly. With ``tty``, the command starts a
    session whose controlling terminal is its standard input (a pty the caller gives it)."""
    euid, egid = os.geteuid(), os.getegid()
    same = run_as is None or run_as.uid is None
    if run_as is not None and run_as.uid is not None:
        same = (run_as.uid, run_as.gid if run_as.gid is not None else egid) == (euid, egid)
    if same and not cgroups and not tty:
        return Invocation(list(argv), dict(env))  # nothing to drop, nothing to join
    fd = os.memfd_create("navarch-env", os.MFD_CLOEXEC)
    payload: dict[str, object] = {"env": env, "cgroups": list(cgroups)}
    if tty:
        payload["tty"] = True
    os.write(fd, json.dumps(payload).encode())
    os.lseek(fd, 0, os.SEEK_SET)
    if same or run_as is None or run_as.uid is None:
        uid, gid, groups = -1, -1, ""
    else:
        uid, gid = run_as.uid, run_as.gid if run_as.gid is not None else egid
        groups = ",".join(str(g) for g in run_as.groups)
    helper = [sys.executable, "-I", "-m", "nodeagent.runas", str(uid), str(gid), groups, str(fd), "--"]
    return Invocation([*helper, *argv], {"PATH": HELPER_PATH}, (fd,), [fd])


def _read_payload(fd: int) -> tuple[dict[str, str], list[str], bool]:
    with os.fdopen(fd, "rb") as f:
        data = json.loads(f.read() or b"{}")
    if not isinstance(data, dict) or not isinstance(data.get("env", {}), dict):
        raise ValueError("the payload must be an object with an env object")
    env = {str(k): str(v) for k, v in data.get("env", {}).items()}
    return env, [str(p) for p in data.get("cgroups", [])], bool(data.get("tty", False))


def main(argv: list[str]) -> int:
    """Join the container's cgroups, switch to the user (UID -1: stay) and exec; returns only on failure."""
    if len(argv) < 6 or argv[4] != "--":
        sys.stderr.write("usage: python -m nodeagent.runas UID GID GROUPS PAYLOAD_FD -- COMMAND...\n")
        return 2
    uid, gid, groups, payload_fd, command = int(argv[0]), int(argv[1]), argv[2], int(argv[3]), argv[5:]
    env, cgroups, tty = _read_payload(payload_fd)
    if tty:
        # A session of its own whose controlling terminal is the pty on stdin: Ctrl-C and window changes
        # reach the command's foreground process group, as in a terminal.
        os.setsid()
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)
    pid = str(os.getpid())
    for procs in cgroups:  # before the privileges go: joining needs them
        try:
            with open(procs, "w") as f:
                f.write(pid)
        except OSError as err:
            sys.stderr.write(f"cannot join the container's cgroup {os.path.dirname(procs)}: {err.strerror or err}\n")
            return 126
    if uid >= 0:
        os.setgroups([int(g) for g in groups.split(",") if g])
        os.setgid(gid)
        os.setuid(uid)
    try:
        os.execvpe(command[0], command, env)
    except OSError as err:
        sys.stderr.write(f"{command[0]}: {err.strerror or err}\n")
        return 127 if isinstance(err, FileNotFoundError) else 126
    return 0  # not reached: exec replaced this process


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
