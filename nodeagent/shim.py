"""The container shim: one small process per container that outlives agent restarts.

``python -m nodeagent.shim SPEC.json`` — started by the agent in a new session, it

1. joins the container's cgroups (if given; shielded from the OOM killer) and starts the workload there,
   or under an rlimit, with default signal dispositions, in the shim's process group (so the agent can
   signal the whole tree);
2. copies the workload's stdout and stderr into the container's log file, one line per record in the
   CRI format (``<RFC3339Nano> stdout|stderr F <line>``), rotating by size and keeping N files;
3. records the start (``started.json``) and, when the workload ends, its exit status (``exit.json``),
   each written atomically.

The shim itself ignores SIGTERM/SIGINT/SIGHUP so that it outlives a graceful stop of its workload and can
record how it ended; SIGKILL to the group ends both (the agent then records the status itself). Because the
shim holds the pipes, the agent can die and come back without the workload noticing.
"""

from __future__ import annotations

import contextlib
import os
import resource
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO

from nodeagent.shimspec import ShimSpec, ShimStarted, Termination, now_rfc3339


class RotatingLog:
    """A CRI-format log file rotated by size: log, log.1, ... log.N (oldest dropped)."""

    def __init__(self, path: Path, max_bytes: int, keep: int, owner: tuple[int, int] | None = None) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.keep = keep
        self.owner = owner
        """The pod's user and group: log files are theirs, mode 0640 (the directory keeps others out)."""
        self._lock = threading.Lock()
        self._file = self._open()
        self._size = path.stat().st_size

    def _open(self) -> IO[bytes]:
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o640)
        if self.owner is not None:
            with contextlib.suppress(PermissionError):
                os.fchown(fd, *self.owner)
        return os.fdopen(fd, "ab")

    def write(self, stream: str, line: bytes) -> None:
        """Append one record; rotate first if the file is full."""
        tag = b"P" if not line.endswith(b"\n") else b"F"
        record = f"{now_rfc3339()} {stream} ".encode() + tag + b" " + line.rstrip(b"\n") + b"\n"
        with self._lock:
            if self._size and self._size + len(record) > self.max_bytes:
                self._rotate()
            self._file.write(record)
            self._file.flush()
            self._size += len(record)

    def _rotate(self) -> None:
        self._file.close()
        for i in range(self.keep - 1, 0, -1):
            older = self.path.with_name(f"{self.path.name}.{i}")
            if older.exists():
                os.replace(older, self.path.with_name(f"{self.path.name}.{i + 1}"))
        if self.keep > 0:
            os.replace(self.path, self.path.with_name(f"{self.path.name}.1"))
        else:
            self.path.unlink(missing_ok=True)
        self._file = self._open()
        self._size = 0

    def close(self) -> None:
        """Close the file."""
        with self._lock:
            self._file.close()


MAX_RECORD = 16 * 1024
"""Longest piece of a line held at once (the CRI's split size): a longer line is logged as partial records
(``P``), so a workload writing one endless line costs the shim 16 KiB, not the host's memory."""


def pump(stream: IO[bytes], name: str, log: RotatingLog) -> None:
    """Copy a workload's output stream into the log, line by line, each record at most MAX_RECORD bytes."""
    for line in iter(lambda: stream.readline(MAX_RECORD), b""):
        log.write(name, line)


def _child_setup(spec: ShimSpec, oom_score_adj: str | None) -> None:
    for default in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGPIPE, signal.SIGCHLD):
        signal.signal(default, signal.SIG_DFL)
    # The workload is in the container's cgroups already (inherited from the shim); it gives up the shim's
    # protection from the OOM killer, so that it, not the shim, is what a memory limit kills.
    if oom_score_adj is not None:
        with open(OOM_SCORE_ADJ, "w") as f:
            f.write(oom_score_adj)
    if spec.rlimit_as:
        resource.setrlimit(resource.RLIMIT_AS, (spec.rlimit_as, spec.rlimit_as))
    # Privileges go last: the writes above need them. Groups first, then gid, then uid (after which none
    # of these calls would be allowed any more).
    if spec.uid is not None:
        os.setgroups(spec.groups)
        if spec.gid is not None:
            os.setgid(spec.gid)
        os.setuid(spec.uid)


OOM_SCORE_ADJ = "/proc/self/oom_score_adj"
OOM_SCORE_ADJ_MIN = "-1000"
"""The kernel's OOM killer never picks a process with this score adjustment (it needs CAP_SYS_RESOURCE)."""


def join_cgroups(cgroup_procs: list[str]) -> None:
    """Move this process into the container's cgroups (``OSError`` naming the group if one refuses).

    The shim joins before it starts the workload or reads a byte of its output: what the shim allocates
    from then on (its output buffers among it) is charged to the container's memory limit and its CPU to the
    container's quota, not to the node."""
    pid = str(os.getpid())
    for procs in cgroup_procs:
        try:
            with open(procs, "w") as f:
                f.write(pid)
        except OSError as err:
            raise CgroupJoinError(Path(procs).parent, err) from err


class CgroupJoinError(OSError):
    """The shim could not join one of its container's cgroups."""

    def __init__(self, group: Path, err: OSError) -> None:
        super().__init__(err.errno, f"cannot join cgroup {group}: {err.strerror or err}")


def shield_from_oom_killer() -> str | None:
    """Make the OOM killer pass this process over (it is in the container's memory cgroup, and it must live
    to record how the workload ended); the previous adjustment, for the workload to take back, or None if
    this process may not lower its own (an unprivileged agent: then an OOM kill may take the shim too, and
    the agent records the end itself)."""
    try:
        with open(OOM_SCORE_ADJ) as f:
            previous = f.read().strip()
        with open(OOM_SCORE_ADJ, "w") as f:
            f.write(OOM_SCORE_ADJ_MIN)
    except OSError:
        return None
    return previous


PR_SET_CHILD_SUBREAPER = 36


def become_subreaper() -> None:
    """Orphaned descendants of the workload become our children instead of init's (Linux; best effort)."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    except (OSError, AttributeError):
        pass


def descendants(root: int) -> list[int]:
    """Every process below ``root`` (from /proc's parent links)."""
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        parents.setdefault(ppid, []).append(int(entry))
    out, todo = [], [root]
    while todo:
        for child in parents.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def kill_descendants(rounds: int = 50) -> None:
    """SIGKILL and reap everything below this process, until nothing is left (bounded)."""
    me = os.getpid()
    for _ in range(rounds):
        left = descendants(me)
        if not left:
            return
        for pid in left:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        reap_children()
        time.sleep(0.01)


def reap_children() -> None:
    """Collect every child that has ended, without waiting for those that have not."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def main(spec_path: str) -> int:
    """Run the container described by a spec file (``python -m nodeagent.shim SPEC.json``)."""
    return run(ShimSpec.read(Path(spec_path)))


def run(spec: ShimSpec) -> int:
    """Run the container described by ``spec``; returns the shim's own exit code."""
    become_subreaper()
    state_dir = Path(spec.state_dir)
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)
    owner = (spec.uid, spec.gid if spec.gid is not None else -1) if spec.uid is not None else None
    log = RotatingLog(Path(spec.log_path), spec.log_max_bytes, spec.log_keep, owner)
    try:
        join_cgroups(spec.cgroup_procs)
        previous_oom_score_adj = shield_from_oom_killer() if spec.cgroup_procs else None
        child = subprocess.Popen(
            spec.argv,
            env=spec.env,
            cwd=spec.cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            preexec_fn=lambda: _child_setup(spec, previous_oom_score_adj),
        )
    except OSError as err:
        message = f"{spec.argv[0]}: {err.strerror}" if err.strerror else str(err)
        if isinstance(err, CgroupJoinError):
            message = str(err.strerror)
        elif err.filename == spec.cwd:
            message = f"working directory {spec.cwd}: {err.strerror}"
        Termination(128, 0, "StartError", message, now_rfc3339(), started=False).write(state_dir)
        log.close()
        return 0
    ShimStarted(child.pid, now_rfc3339()).write(state_dir)
    pumps = [
        threading.Thread(target=pump, args=(s, n, log), daemon=True)
        for s, n in ((child.stdout, "stdout"), (child.stderr, "stderr"))
    ]
    for t in pumps:
        t.start()
    code = child.wait()
    # The container ends with its main process (as a container's processes end with its PID 1): anything it
    # left behind, daemons that setsid'd away included (re-parented to us, a subreaper), is killed.
    kill_descendants()
    for t in pumps:
        t.join(timeout=5)
    log.close()
    exit_code, killed_by = (code, 0) if code >= 0 else (128 - code, -code)
    Termination(exit_code, killed_by, "Completed" if code == 0 else "Error", "", now_rfc3339()).write(state_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
