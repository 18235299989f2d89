"""Start Navarch's own daemons as child processes (API server, node agents) and clean up after them.

Used by the benchmarks now and by ``navarch up`` later: every process is started from the same
virtual environment as the caller, logs to a file, and is stopped with SIGTERM (SIGKILL after a timeout).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

BIN = Path(sys.executable).parent
"""Where the console scripts of this installation are."""


@dataclass
class Daemon:
    """One started process and its log file."""

    name: str
    argv: list[str]
    log_path: Path
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def start(self) -> Daemon:
        """Start the process (its output goes to the log file)."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(self.argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        return self

    def running(self) -> bool:
        """Whether the process is still there."""
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM, then SIGKILL if it has not exited within ``timeout``."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=timeout)


def apiserver(etcd_endpoints: Sequence[str], listen: str, log_path: Path, *extra: str) -> Daemon:
    """A ``navarch-apiserver`` daemon (not started); plain text (``--insecure``, loopback) unless ``extra`` brings
    ``--tls-cert-file``."""
    mode = [] if "--tls-cert-file" in extra else ["--insecure"]
    argv = [
        str(BIN / "navarch-apiserver"),
        "--etcd-servers",
        ",".join(etcd_endpoints),
        "--listen",
        listen,
        *mode,
        *extra,
    ]
    return Daemon("apiserver", argv, log_path)


def scheduler(servers: Sequence[str], listen: str, log_path: Path, *extra: str) -> Daemon:
    """A ``navarch-scheduler`` daemon (not started)."""
    argv = [str(BIN / "navarch-scheduler"), "--server", ",".join(servers), "--listen", listen, *extra]
    return Daemon("scheduler", argv, log_path)


def controller_manager(servers: Sequence[str], listen: str, log_path: Path, *extra: str) -> Daemon:
    """A ``navarch-controller-manager`` daemon (not started)."""
    argv = [str(BIN / "navarch-controller-manager"), "--server", ",".join(servers), "--listen", listen, *extra]
    return Daemon("controller-manager", argv, log_path)


def agent(
    servers: Sequence[str],
    node_name: str,
    node_ip: str,
    data_dir: Path,
    log_path: Path,
    *extra: str,
    run_as: tuple[int, int] | None = None,
) -> Daemon:
    """A ``navarch-agent`` daemon listening on ``node_ip`` (port chosen by the OS), not started.

    Workloads without ``runAsUser`` run as ``run_as`` (uid, gid); None: as whoever starts the agent (tests and
    benchmarks, whose workloads run an interpreter under a private directory)."""
    uid, gid = run_as if run_as is not None else (os.geteuid(), os.getegid())
    argv = [
        str(BIN / "navarch-agent"),
        "--server",
        ",".join(servers),
        "--node-name",
        node_name,
        "--node-ip",
        node_ip,
        "--data-dir",
        str(data_dir),
        "--listen",
        f"{node_ip}:0",
        "--run-as-user",
        str(uid),
        "--run-as-group",
        str(gid),
        *extra,
    ]
    return Daemon(f"agent {node_name}", argv, log_path)


def kill_workloads(data_dir: Path) -> int:
    """SIGKILL every container shim (and so its process group) an agent with ``data_dir`` started.

    A shim is recognised by its standard error, which is its container's ``shim.log`` under the data
    directory (shims are forked by the agent's fork server, so their command line is the server's)."""
    root = str(data_dir.resolve()) + os.sep
    killed = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stderr = os.readlink(entry / "fd" / "2")
        except OSError:
            continue
        if stderr.startswith(root) and stderr.endswith("/shim.log"):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(int(entry.name), signal.SIGKILL)
                killed += 1
    return killed
