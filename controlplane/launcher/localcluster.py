"""The supervisor behind ``navarch up``: a whole cluster on this machine, kept running until told to stop.

::

    navarch up ──spawns──> python -m controlplane.launcher.localcluster --data-dir DIR ...   (own session)
                              etcd (1 or 3 members) ─> navarch-apiserver ─> scheduler, controller manager
                              ─> N agents on 127.0.0.2, 127.0.0.3, ... (own data dir each)
                              writes DIR/cluster.json (state "ready"), then restarts whatever dies
                              (back-off per component) until SIGTERM
    navarch down ──SIGTERM──> agents stopped and their workloads killed, components stopped, etcd stopped

Each agent gets its own loopback address, so nodes have distinct IPs without root (Linux routes all of
127.0.0.0/8 to the loopback interface).

Secure by default: the first ``up`` makes a PKI in ``DIR/pki`` (the data directory is 0700, keys 0600), etcd
serves its clients over mutual TLS, the API server serves only mutual TLS (loopback included) with the
node authorizer and RBAC, every component and agent has its own certificate, and the CLI gets the admin
certificate. Another local user without those files gets a failed handshake, nothing else. ``--insecure``
(tests only) runs everything in plain text on loopback, where any local user can do anything.

``cluster.json`` records the supervisor's pid, the addresses and the
etcd ports, so a second ``navarch up`` can tell a cluster is running and a later one reuses etcd's data.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import pwd
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from controlplane import pki
from controlplane.clusterpki import ClusterPki, init_cluster_pki
from controlplane.launcher import processes
from controlplane.launcher.etcd import EtcdCluster, EtcdTLS, free_port

log = logging.getLogger("navarch.up")

STATE_FILE = "cluster.json"


def state_path(data_dir: Path) -> Path:
    """Where a local cluster's state is recorded."""
    return data_dir / STATE_FILE


def read_state(data_dir: Path) -> dict[str, Any] | None:
    """The recorded state, or None if there is none (or it is unreadable)."""
    try:
        data = json.loads(state_path(data_dir).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def running_supervisor(data_dir: Path) -> dict[str, Any] | None:
    """The state of a cluster whose supervisor is alive, else None."""
    state = read_state(data_dir)
    if state is None or state.get("phase") == "stopped" or not isinstance(state.get("pid"), int):
        return None
    return state if pid_alive(state["pid"]) else None


@dataclass
class _Supervised:
    """A daemon and its restart back-off."""

    daemon: processes.Daemon
    restarts: int = 0
    next_start: float = 0.0
    delay: float = 1.0


@dataclass
class LocalCluster:
    """Starts, supervises and stops every process of a local cluster."""

    data_dir: Path
    agents: int = 3
    etcd_members: int = 1
    port: int = 6443
    insecure: bool = False
    run_as: tuple[int, int] | None = None
    """uid and gid of workloads without ``runAsUser`` (None: as the user who started the cluster)."""
    components: dict[str, _Supervised] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.data_dir = self.data_dir.resolve()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        # Traversable, not listable: a workload run as another user reaches its own sandbox and volumes by
        # absolute path; the certificates (pki/), logs and etcd's data each sit in a directory of mode 0700.
        self.data_dir.chmod(0o711)
        self.api = f"127.0.0.1:{self.port}"
        self.nodes = [(f"node-{i + 1}", f"127.0.0.{i + 2}") for i in range(self.agents)]
        self.pki: ClusterPki | None = None if self.insecure else local_pki(self.data_dir / "pki", self.nodes)
        previous = read_state(self.data_dir) or {}
        ports = previous.get("etcd_ports")
        if not (isinstance(ports, list) and len(ports) == self.etcd_members):
            ports = [(free_port(), free_port()) for _ in range(self.etcd_members)]
        tls = None
        if self.pki is not None:
            c = self.pki
            tls = EtcdTLS(
                c.etcd_ca,
                c.cert("etcd/server"),
                c.key("etcd/server"),
                client_cert_file=c.cert("apiserver-etcd-client"),
                client_key_file=c.key("apiserver-etcd-client"),
                peer_cert_file=c.cert("etcd/peer"),
                peer_key_file=c.key("etcd/peer"),
            )
        (self.data_dir / "etcd").mkdir(mode=0o700, exist_ok=True)
        (self.data_dir / "etcd").chmod(0o700)  # its logs and data: nobody else's business
        self.etcd = EtcdCluster(
            self.etcd_members, base_dir=self.data_dir / "etcd", fast=True, ports=[tuple(p) for p in ports], tls=tls
        )
        self.logs = self.data_dir / "logs"
        recorded = previous.get("metrics")
        known: dict[str, Any] = recorded if isinstance(recorded, dict) else {}
        self.metrics: dict[str, str] = {}
        """Each component's metrics address (``host:port``), kept across restarts of the cluster."""
        for name, host in [("apiserver", "127.0.0.1"), ("scheduler", "127.0.0.1"), ("controller-manager", "127.0.0.1")]:
            self.metrics[name] = str(known.get(name) or f"{host}:{free_port()}")
        for name, ip in self.nodes:
            self.metrics[f"agent {name}"] = str(known.get(f"agent {name}") or f"{ip}:{free_port()}")

    @property
    def metrics_scheme(self) -> str:
        """``https`` (secure clusters) or ``http``."""
        return "http" if self.pki is None else "https"

    def write_scrape_config(self) -> Path:
        """``DIR/prometheus.yml``: a Prometheus scrape configuration for every component, with the scraper
        certificate (``pki/monitoring.pem``, group system:monitoring) in secure clusters."""
        jobs = []
        groups = {
            "navarch-apiserver": ["apiserver"],
            "navarch-scheduler": ["scheduler"],
            "navarch-controller-manager": ["controller-manager"],
            "navarch-agent": [f"agent {n}" for n, _ in self.nodes],
        }
        for job, names in groups.items():
            entry: dict[str, Any] = {
                "job_name": job,
                "scheme": self.metrics_scheme,
                "static_configs": [{"targets": [self.metrics[n] for n in names]}],
            }
            if self.pki is not None:
                entry["tls_config"] = {
                    "ca_file": self.pki.ca,
                    "cert_file": self.pki.cert("monitoring"),
                    "key_file": self.pki.key("monitoring"),
                }
            jobs.append(entry)
        path = self.data_dir / "prometheus.yml"
        text = "# Written by navarch up: scrape every component of this cluster.\n" + yaml.safe_dump(
            {"global": {"scrape_interval": "15s"}, "scrape_configs": jobs}, sort_keys=False
        )
        path.write_text(text)
        return path

    def _write_state(self, phase: str) -> None:
        state = {
            "pid": os.getpid(),
            "phase": phase,
            "api": self.api,
            "etcd": self.etcd.endpoints,
            "etcd_ports": [[m.client_port, m.peer_port] for m in self.etcd.members],
            "nodes": [{"name": n, "ip": ip} for n, ip in self.nodes],
            "logs": str(self.logs),
            "pki": str(self.pki.root) if self.pki is not None else "",
            "metrics": self.metrics,
            "metrics_scheme": self.metrics_scheme,
            "run_as": list(self.run_as) if self.run_as is not None else [os.geteuid(), os.getegid()],
            "components": {
                name: (s.daemon.proc.pid if s.daemon.proc is not None else 0) for name, s in self.components.items()
            },
        }
        path = state_path(self.data_dir)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=2))
        tmp.replace(path)

    def start(self) -> None:
        """Start everything in dependency order and record the state as ready."""
        self.logs.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.logs.chmod(0o700)
        self._write_state("starting")
        self.etcd.start(timeout=60)
        self.write_scrape_config()
        servers = [self.api]
        # The usual status ports on the usual API port; any free ones beside a cluster on another port.
        scheduler_port, manager_port = (10259, 10257) if self.port == 6443 else (0, 0)
        c = self.pki
        daemons = [
            processes.apiserver(
                self.etcd.endpoints,
                self.api,
                self.logs / "apiserver.log",
                *apiserver_tls(c),
                "--metrics-listen",
                self.metrics["apiserver"],
            ),
            processes.scheduler(
                servers,
                f"127.0.0.1:{scheduler_port}",
                self.logs / "scheduler.log",
                "--leader-elect",
                *client_tls(c, "scheduler"),
                "--metrics-listen",
                self.metrics["scheduler"],
            ),
            processes.controller_manager(
                servers,
                f"127.0.0.1:{manager_port}",
                self.logs / "controller-manager.log",
                "--leader-elect",
                *client_tls(c, "controller-manager"),
                "--metrics-listen",
                self.metrics["controller-manager"],
            ),
        ]
        for name, ip in self.nodes:
            agent_dir = self.data_dir / "agents" / name
            node_tls = client_tls(c, f"nodes/{name}") + (["--cert-dir", str(agent_dir / "pki")] if c else [])
            node_tls += ["--metrics-listen", self.metrics[f"agent {name}"]]
            daemons.append(
                processes.agent(servers, name, ip, agent_dir, self.logs / f"{name}.log", *node_tls, run_as=self.run_as)
            )
        for d in daemons:
            self.components[d.name] = _Supervised(d.start())
        self._write_state("ready")

    def supervise_once(self) -> None:
        """Restart what died (etcd members too), each with its own growing back-off."""
        for index, member in enumerate(self.etcd.members):
            if not member.running:
                log.warning("etcd member %s exited; restarting it", member.name)
                self.etcd.start_member(self.etcd.members[index], state="existing")
        now = time.monotonic()
        changed = False
        for name, s in self.components.items():
            if s.daemon.running() or now < s.next_start:
                continue
            if s.next_start:  # its back-off is over: start it again
                s.daemon.start()
                s.restarts += 1
                s.next_start = 0.0
                changed = True
                log.warning("%s restarted (restart %d)", name, s.restarts)
            else:
                s.next_start = now + s.delay
                s.delay = min(s.delay * 2, 30.0)
                log.warning("%s exited; restarting it in %.0fs (log in %s)", name, s.delay / 2, s.daemon.log_path)
        if changed:
            self._write_state("ready")

    def stop(self) -> None:
        """Stop agents (and kill their workloads), then the control plane, then etcd."""
        self._write_state("stopping")
        order = sorted(self.components.values(), key=lambda s: 0 if s.daemon.name.startswith("agent") else 1)
        for s in order:
            s.daemon.stop()
        for name, _ in self.nodes:
            processes.kill_workloads(self.data_dir / "agents" / name)
        self.etcd.stop()
        self._write_state("stopped")  # kept: a later `up` reuses etcd's ports (its peer URLs are in its data)


def local_pki(directory: Path, nodes: list[tuple[str, str]]) -> ClusterPki:
    """The local cluster's PKI, made on first use: the cluster's certificates plus one per node."""
    if not (directory / "ca-key.pem").exists():
        init_cluster_pki(directory)
    directory.chmod(0o700)
    c = ClusterPki(directory)
    ca: pki.CertificateAuthority | None = None
    if not Path(c.cert("monitoring")).exists():  # data dirs made before the scraper identity existed
        ca = pki.CertificateAuthority.load(c.ca, c.ca_key)
        cert, key = ca.issue_pair(pki.Identity(pki.MONITORING_USER, (pki.MONITORING_GROUP,)))
        pki.write_pair(directory, "monitoring", cert, key)
    for name, ip in nodes:
        if Path(c.cert(f"nodes/{name}")).exists():
            continue
        ca = ca or pki.CertificateAuthority.load(c.ca, c.ca_key)
        identity = pki.Identity(f"{pki.NODE_USER_PREFIX}{name}", (pki.NODES_GROUP,))
        cert, key = ca.issue_pair(identity, client=True, server=True, sans=pki.Sans([name], [ip]))
        pki.write_pair(directory / "nodes", name, cert, key, chain=[ca.cert])
    return c


def client_tls(c: ClusterPki | None, name: str) -> list[str]:
    """A component's flags to call the API server with its own certificate (none in plain text)."""
    if c is None:
        return []
    return ["--certificate-authority", c.ca, "--client-certificate", c.cert(name), "--client-key", c.key(name)]


def apiserver_tls(c: ClusterPki | None) -> list[str]:
    """The API server's flags for mutual TLS towards clients, agents and etcd (none in plain text)."""
    if c is None:
        return []
    return [
        "--tls-cert-file",
        c.cert("apiserver"),
        "--tls-private-key-file",
        c.key("apiserver"),
        "--client-ca-file",
        c.ca,
        "--cluster-signing-cert-file",
        c.ca,
        "--cluster-signing-key-file",
        c.ca_key,
        "--agent-client-certificate",
        c.cert("apiserver-agent-client"),
        "--agent-client-key",
        c.key("apiserver-agent-client"),
        "--etcd-cafile",
        c.etcd_ca,
        "--etcd-certfile",
        c.cert("apiserver-etcd-client"),
        "--etcd-keyfile",
        c.key("apiserver-etcd-client"),
    ]


UNPRIVILEGED = (65534, 65534)
"""``nobody``/``nogroup``: whom a local cluster started by root runs workloads as, unless told otherwise."""


def default_workload_identity(uid: int | None, gid: int | None) -> tuple[int, int]:
    """Whom workloads without ``runAsUser`` run as: the given uid (with the given gid, else that user's
    primary group, else the gid of the same number); without one, ``nobody`` when started by root (a pod asks
    for root with ``runAsUser: 0``), else the user who started the cluster (nobody else can be switched to)."""
    if uid is None:
        return UNPRIVILEGED if os.geteuid() == 0 else (os.geteuid(), os.getegid())
    if gid is None:
        try:
            gid = pwd.getpwuid(uid).pw_gid
        except KeyError:
            gid = uid
    return uid, gid


def main(argv: list[str] | None = None) -> int:
    """Run a local cluster until SIGTERM/SIGINT."""
    parser = argparse.ArgumentParser(description="Run a local Navarch cluster (used by `navarch up`).")
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--agents", type=int, default=3)
    parser.add_argument("--etcd-members", type=int, choices=(1, 3), default=1)
    parser.add_argument("--port", type=int, default=6443)
    parser.add_argument("--insecure", action="store_true", help="Plain text on loopback (tests only).")
    parser.add_argument("--run-as-user", type=int, default=None, help="uid of workloads without runAsUser.")
    parser.add_argument("--run-as-group", type=int, default=None)
    opts = parser.parse_args(argv)
    run_as = default_workload_identity(opts.run_as_user, opts.run_as_group)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    stopping = False

    def request_stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    cluster = LocalCluster(
        opts.data_dir, opts.agents, opts.etcd_members, opts.port, insecure=opts.insecure, run_as=run_as
    )
    try:
        cluster.start()
        while not stopping:
            cluster.supervise_once()
            time.sleep(0.5)
    except Exception as err:
        log.error("local cluster failed: %s", err)
        return 1
    finally:
        cluster.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
