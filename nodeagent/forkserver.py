"""A fork server for container shims: one pre-imported shim parent per agent forks a supervisor per container.

Starting a fresh interpreter per container costs ~40 ms of CPU and a whole interpreter's memory; forking a
parent that has already imported the shim costs about a millisecond, and the forked supervisor shares the
parent's pages until it writes them.

Guarantees:

- The server is the agent's child in a session of its own, talking over a private socket pair inherited at
  start (no file-system socket: no other local user can ask it to fork). It exits when the agent's end of
  the socket closes, whatever the agent died of.
- Every supervisor it forks calls ``setsid`` at once, so its pid is its container's process group (the agent
  signals the whole tree with ``killpg``), and it runs ``nodeagent.shim.run`` on the spec it was given
  (a memfd passed with ``SCM_RIGHTS``: the spec holds the container's environment, Secrets included, and
  never touches the disk). A supervisor outlives the server and the agent (it is re-parented and keeps its
  pipes); a restarted agent adopts it by pid and start time exactly as it adopts a shim started by an earlier
  agent.
- The server reaps its finished supervisors; how a container ended is in its ``exit.json``, never in a wait
  status, so nobody needs to be the supervisor's parent.

``ForkServer.start`` is synchronous and takes about a millisecond; it restarts a server that died (once per
call) and raises ``OSError`` if no server can be had.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import select
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from nodeagent.shimspec import ShimSpec

REPLY_TIMEOUT = 10.0
"""Seconds to wait for the server's answer (the first call includes the server's own start)."""


class ForkServer:
    """The agent's handle on its fork server (started on first use)."""

    def __init__(self, log_path: Path, native: Path | None = None) -> None:
        self.log_path = log_path
        self.native = native
        """The compiled supervisor each forked child execs (``nodeagent.nativeshim``); None: the Python one."""
        self._proc: subprocess.Popen[bytes] | None = None
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()

    def _spawn(self) -> socket.socket:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            with open(self.log_path, "ab") as log:
                self._proc = subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "nodeagent.forkserver",
                        str(theirs.fileno()),
                        *([str(self.native)] if self.native is not None else []),
                    ],
                    pass_fds=[theirs.fileno()],
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=log,
                    start_new_session=True,
                    cwd="/",
                    env={
                        "PYTHONPATH": os.pathsep.join(p for p in sys.path if p),
                        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                    },
                )
        except OSError:
            ours.close()
            raise
        finally:
            theirs.close()
        ours.settimeout(REPLY_TIMEOUT)
        self._sock = ours
        return ours

    def _ask(self, sock: socket.socket, state_dir: Path, spec_fd: int) -> int:
        # The spec (with the container's environment, Secrets included) travels as a descriptor, never
        # through a file: only the state directory's name is in the message.
        socket.send_fds(sock, [os.fsencode(state_dir)], [spec_fd])
        reply = sock.recv(64)
        if not reply:
            raise ConnectionError("the fork server closed its socket")
        text = reply.decode(errors="replace")
        if not text.isdigit():
            raise OSError(f"the fork server could not start a shim: {text}")
        return int(text)

    def start(self, state_dir: Path, spec: bytes) -> int:
        """Fork a supervisor for the container whose state is in ``state_dir`` and whose spec (JSON) is
        ``spec``; its pid. The spec is handed over in a memfd, so it never touches the disk."""
        fd = os.memfd_create("navarch-spec", os.MFD_CLOEXEC)
        try:
            os.write(fd, spec)
            return self._start_locked(state_dir, fd)
        finally:
            os.close(fd)

    def _start_locked(self, state_dir: Path, spec_fd: int) -> int:
        with self._lock:
            for attempt in (1, 2):
                sock = self._sock or self._spawn()
                try:
                    return self._ask(sock, state_dir, spec_fd)
                except (ConnectionError, TimeoutError, BrokenPipeError) as err:
                    self._close_locked()
                    if attempt == 2:
                        raise OSError(f"no fork server: {err}") from err
        raise AssertionError("unreachable")

    def warm_up(self) -> None:
        """Start the server now rather than on the first container start."""
        with self._lock:
            if self._sock is None:
                self._spawn()

    def pid(self) -> int | None:
        """The server's pid, if one runs."""
        return self._proc.pid if self._proc is not None and self._proc.poll() is None else None

    def _close_locked(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        if self._proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._proc.wait(timeout=2)  # it exits on the closed socket
            if self._proc.poll() is None:
                self._proc.kill()
                self._proc.wait()
            self._proc = None

    def close(self) -> None:
        """Stop the server (supervisors it forked keep running)."""
        with self._lock:
            self._close_locked()


# ---------------------------------------------------------------- the server process


def _name_process(name: bytes) -> None:
    """Set the process's name as ``ps``/``pgrep`` show it (Linux ``PR_SET_NAME``; best effort)."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(15, ctypes.c_char_p(name), 0, 0, 0)  # PR_SET_NAME


def _supervise(state_dir: str, spec_fd: int, native: str | None) -> None:
    """In the forked child: become the container's session leader and run the shim (the compiled one when
    ``native`` names it, exec'd in place, so its pid stays the one the agent was told); never returns."""
    code = 1
    try:
        os.setsid()
        _name_process(b"navarch-shim")
        os.chdir("/")
        devnull = os.open(os.devnull, os.O_RDWR)
        os.dup2(devnull, 0)
        os.dup2(devnull, 1)
        log = os.open(Path(state_dir) / "shim.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        os.dup2(log, 2)
        for fd in (devnull, log):
            if fd > 2:
                os.close(fd)
        from nodeagent import shim
        from nodeagent.shimspec import ShimSpec

        os.lseek(spec_fd, 0, os.SEEK_SET)
        with os.fdopen(spec_fd, "rb") as f:
            spec = ShimSpec.loads(f.read())
        code = shim.run(spec) if native is None else _exec_native(native, spec)
    except BaseException as err:
        with contextlib.suppress(Exception):
            os.write(2, f"shim: {err!r}\n".encode())
    finally:
        os._exit(code)


def _exec_native(native: str, spec: ShimSpec) -> int:
    """Join the container's cgroups, shield this process from the OOM killer, then become the compiled
    supervisor; returns only when the container could not be started (its StartError recorded)."""
    from nodeagent import nativeshim, shim
    from nodeagent.shimspec import Termination, now_rfc3339

    try:
        shim.join_cgroups(spec.cgroup_procs)
        previous = shim.shield_from_oom_killer() if spec.cgroup_procs else None
        wire = nativeshim.wire_spec(spec, previous)
    except (OSError, ValueError) as err:
        message = str(err.strerror) if isinstance(err, OSError) and err.strerror else str(err)
        Termination(128, 0, "StartError", message, now_rfc3339(), started=False).write(Path(spec.state_dir))
        return 0
    fd = os.memfd_create("navarch-spec", 0)  # inherited by the supervisor, which closes it once read
    os.write(fd, wire)
    os.execv(native, [native, str(fd)])


def serve(fd: int, native: str | None = None) -> None:
    """Answer fork requests on the inherited socket until the agent closes it; ``native``: the compiled
    supervisor to exec in each child (else the Python shim runs there)."""
    from nodeagent import nativeshim, shim  # imported once here, so that every fork has them

    del nativeshim  # (imported for the forks' sake, not used here)

    _name_process(b"navarch-forksrv")

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)
    sock = socket.socket(fileno=fd)
    # poll, not select: the inherited descriptor keeps the agent's number, which can be above select's 1024
    # in an agent with many pods (a pidfd each) and connections.
    poller = select.poll()
    poller.register(sock, select.POLLIN)
    while True:
        ready = poller.poll(200)
        shim.reap_children()
        if not ready:
            continue
        try:
            request, fds, _flags, _addr = socket.recv_fds(sock, 4096, 1)
        except OSError:
            return
        if not request:
            return  # the agent is gone
        state_dir = os.fsdecode(request)
        if len(fds) != 1:
            for fd in fds:
                os.close(fd)
            sock.send(b"no spec descriptor")
            continue
        try:
            pid = os.fork()
        except OSError as err:
            sock.send(f"fork: {err.strerror}".encode())
            continue
        if pid == 0:
            sock.close()
            _supervise(state_dir, fds[0], native)
        os.close(fds[0])
        sock.send(str(pid).encode())


if __name__ == "__main__":
    serve(int(sys.argv[1]), sys.argv[2] if len(sys.argv) > 2 else None)
