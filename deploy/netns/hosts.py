"""Network namespaces as hosts: create, run processes inside, kill, cut off, heal, remove."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import uuid
from dataclasses import dataclass, field
from pathlib import Path


def _ip(*args: str) -> None:
    result = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {result.stderr.strip()}")


def netns_available() -> str | None:
    """None if network namespaces can be made here, else the reason they cannot."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    probe = f"nv-probe-{uuid.uuid4().hex[:6]}"
    try:
        _ip("netns", "add", probe)
    except (RuntimeError, OSError) as err:
        return f"cannot create a network namespace: {err}"
    with contextlib.suppress(RuntimeError):
        _ip("netns", "delete", probe)
    return None


@dataclass
class Host:
    """One simulated host: a network namespace with one address, and the processes started in it."""

    name: str
    netns: str
    ip: str
    switch_port: str
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def popen(self, argv: list[str], log_path: Path, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        """Start a process inside this host (its own session; output to ``log_path``)."""
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(log_path, "ab") as log:
            proc = subprocess.Popen(
                ["ip", "netns", "exec", self.netns, *argv],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                start_new_session=True,
            )
        self.processes.append(proc)
        return proc

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Kill every process started in this host (and their process groups), as a host crash would."""
        for proc in self.processes:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, sig)
        for proc in self.processes:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=10)
        self.processes = [p for p in self.processes if p.poll() is None]

    def pids(self) -> list[int]:
        """Every pid in this host's namespace (also processes its daemons started)."""
        out = subprocess.run(["ip", "netns", "pids", self.netns], capture_output=True, text=True, check=False)
        return [int(p) for p in out.stdout.split()]


class HostNetwork:
    """``count`` hosts on one bridge in subnet ``{prefix}.0/24`` (host i gets ``{prefix}.{10 + i}``)."""

    def __init__(self, count: int, *, prefix: str = "10.200.0", tag: str | None = None) -> None:
        self.tag = tag or uuid.uuid4().hex[:5]
        self.prefix = prefix
        self.switch = f"nv-{self.tag}-sw"
        self.hosts: list[Host] = [
            Host(f"h{i + 1}", f"nv-{self.tag}-h{i + 1}", f"{prefix}.{11 + i}", f"s{i + 1}") for i in range(count)
        ]
        self._created: list[str] = []

    def create(self) -> HostNetwork:
        """Make the namespaces, the bridge and the links; bring everything up."""
        try:
            _ip("netns", "add", self.switch)
            self._created.append(self.switch)
            _ip("-n", self.switch, "link", "add", "br0", "type", "bridge")
            _ip("-n", self.switch, "link", "set", "br0", "up")
            _ip("-n", self.switch, "link", "set", "lo", "up")
            for h in self.hosts:
                _ip("netns", "add", h.netns)
                self._created.append(h.netns)
                # Created inside the switch namespace, then one end moved into the host: nothing in ours.
                _ip("-n", self.switch, "link", "add", h.switch_port, "type", "veth", "peer", "name", "eth0")
                _ip("-n", self.switch, "link", "set", "eth0", "netns", h.netns)
                _ip("-n", self.switch, "link", "set", h.switch_port, "master", "br0")
                _ip("-n", self.switch, "link", "set", h.switch_port, "up")
                _ip("-n", h.netns, "addr", "add", f"{h.ip}/24", "dev", "eth0")
                _ip("-n", h.netns, "link", "set", "eth0", "up")
                _ip("-n", h.netns, "link", "set", "lo", "up")
        except Exception:
            self.remove()
            raise
        return self

    def host(self, name: str) -> Host:
        """A host by name (h1, h2, ...)."""
        return next(h for h in self.hosts if h.name == name)

    def cut(self, host: Host) -> None:
        """Take the host off the network (its link on the bridge goes down)."""
        _ip("-n", self.switch, "link", "set", host.switch_port, "down")

    def heal(self, host: Host) -> None:
        """Put the host back on the network."""
        _ip("-n", self.switch, "link", "set", host.switch_port, "up")

    def remove(self) -> None:
        """Kill every host's processes and delete every namespace this network created."""
        for h in self.hosts:
            h.kill()
            for pid in h.pids():  # stragglers started by daemons (workloads)
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        for ns in reversed(self._created):
            with contextlib.suppress(RuntimeError):
                _ip("netns", "delete", ns)
        self._created.clear()

    def __enter__(self) -> HostNetwork:
        return self.create()

    def __exit__(self, *exc: object) -> None:
        self.remove()
