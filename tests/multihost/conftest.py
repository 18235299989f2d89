"""The multihost tier: real daemons in network namespaces (deploy/netns), one per simulated host.

Topology: h1-h3 control plane (an etcd member and an API server each; scheduler and controller manager on
h1 and h2, leader-elected), h4-h6 workers (agents), h7 the operator's host (the CLI runs there). Needs root;
skipped with the reason otherwise. Everything talks mutual TLS with certificates from ``init_cluster_pki``
(what ``navarch pki init`` runs): etcd peers and clients, API servers, scheduler, controller manager, the
CLI as admin; workers join with a bootstrap token and a pinned CA hash.
Short timings so failures are noticed in seconds: node grace 6 s,
toleration 3 s, leader leases 4 s.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from controlplane import pki
from controlplane.clusterpki import ClusterPki, init_cluster_pki
from controlplane.launcher.etcd import find_etcd_binary
from controlplane.pki import Sans
from deploy.netns import Host, HostNetwork, netns_available

BIN = Path(sys.executable).parent
LEASE_SECONDS = 4
NODE_GRACE_SECONDS = 6
TOLERATION_SECONDS = 3
EVICTION_WINDOW = NODE_GRACE_SECONDS + TOLERATION_SECONDS + 6
"""How long "nothing changed" must hold after a fault: a node the controllers thought lost would be tainted
after the grace period and its pods evicted after the toleration; the margin covers a monitor period and a
sync. A check that held this long would have seen an eviction that the fault caused."""


FIGURES: list[str] = []
"""Recovery times the tests measured, printed at the end of the run (CI's log keeps them)."""


def record(line: str) -> None:
    """Keep a measured figure for the summary (and print it, for runs with -s)."""
    FIGURES.append(line)
    print(f"\n{line}")


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if FIGURES:
        terminalreporter.section("multihost recovery times")
        for line in FIGURES:
            terminalreporter.write_line(line)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    reason = netns_available()
    for item in items:
        if "multihost" in str(item.fspath):
            item.add_marker(pytest.mark.multihost)
            if reason:
                item.add_marker(pytest.mark.skip(reason=reason))


@dataclass
class MultiHostCluster:
    """Handles on every daemon of the topology, and the CLI as run from the operator's host."""

    net: HostNetwork
    base: Path
    pki: ClusterPki
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    join_token: str = ""

    @property
    def cli_config(self) -> Path:
        """The CLI's config file: the cluster CA and the admin certificate."""
        return self.base / "navarch-config"

    def write_cli_config(self) -> None:
        config = {
            "current-context": "multihost",
            "clusters": [{"name": "multihost", "server": self.apis, "certificate-authority": self.pki.ca}],
            "users": [
                {"name": "admin", "client-certificate": self.pki.cert("admin"), "client-key": self.pki.key("admin")}
            ],
            "contexts": [{"name": "multihost", "cluster": "multihost", "user": "admin"}],
        }
        self.cli_config.write_text(json.dumps(config))

    def _tls_client(self, name: str) -> list[str]:
        return [
            "--certificate-authority",
            self.pki.ca,
            "--client-certificate",
            self.pki.cert(name),
            "--client-key",
            self.pki.key(name),
        ]

    @property
    def control(self) -> list[Host]:
        return self.net.hosts[:3]

    @property
    def workers(self) -> list[Host]:
        return self.net.hosts[3:6]

    @property
    def operator(self) -> Host:
        return self.net.hosts[6]

    @property
    def apis(self) -> str:
        return ",".join(f"{h.ip}:6443" for h in self.control)

    def start(self, name: str, host: Host, argv: list[str]) -> None:
        self.procs[name] = host.popen(argv, self.base / "logs" / f"{name}.log")

    def start_etcd_again(self, host: Host) -> None:
        """Restart a member on its data (it rejoins with the membership it has)."""
        self.start_etcd(host, state="existing")

    def etcd_revisions_agree(self) -> bool:
        """Whether every member reports the same revision (a restarted one has caught up)."""
        revisions = set()
        for h in self.control:
            argv = [
                "ip",
                "netns",
                "exec",
                h.netns,
                sys.executable,
                "-c",
                "import json,ssl,urllib.request;"
                f"c=ssl.create_default_context(cafile='{self.pki.etcd_ca}');"
                f"c.load_cert_chain('{self.pki.cert('apiserver-etcd-client')}','{self.pki.key('apiserver-etcd-client')}');"
                f"r=urllib.request.urlopen(urllib.request.Request('https://{h.ip}:2379/v3/kv/range',"
                "data=json.dumps({'key':'Lw==','serializable':True}).encode()),timeout=2,context=c);"
                "print(json.load(r)['header']['revision'])",
            ]
            out = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
            if out.returncode != 0:
                return False
            revisions.add(out.stdout.strip())
        return len(revisions) == 1

    def start_etcd(self, host: Host, state: str = "new") -> None:
        peers = ",".join(f"e{h.name}=https://{h.ip}:2380" for h in self.control)
        server, peer, ca = "etcd/server", "etcd/peer", self.pki.etcd_ca
        self.start(
            f"etcd-{host.name}",
            host,
            [
                find_etcd_binary(),
                f"--name=e{host.name}",
                f"--data-dir={self.base / host.name / 'etcd'}",
                f"--listen-client-urls=https://{host.ip}:2379",
                f"--advertise-client-urls=https://{host.ip}:2379",
                f"--listen-peer-urls=https://{host.ip}:2380",
                f"--initial-advertise-peer-urls=https://{host.ip}:2380",
                f"--cert-file={self.pki.cert(server)}",
                f"--key-file={self.pki.key(server)}",
                f"--trusted-ca-file={ca}",
                "--client-cert-auth",
                f"--peer-cert-file={self.pki.cert(peer)}",
                f"--peer-key-file={self.pki.key(peer)}",
                f"--peer-trusted-ca-file={ca}",
                "--peer-client-cert-auth",
                f"--initial-cluster={peers}",
                f"--initial-cluster-state={state}",
                "--unsafe-no-fsync",
                "--log-level=warn",
            ],
        )

    def start_apiserver(self, host: Host) -> None:
        etcd = ",".join(f"{h.ip}:2379" for h in self.control)
        self.start(
            f"apiserver-{host.name}",
            host,
            [
                str(BIN / "navarch-apiserver"),
                "--etcd-servers",
                etcd,
                "--listen",
                f"{host.ip}:6443",
                "--token-listen",
                f"{host.ip}:6444",
                "--tls-cert-file",
                self.pki.cert("apiserver"),
                "--tls-private-key-file",
                self.pki.key("apiserver"),
                "--client-ca-file",
                self.pki.ca,
                "--cluster-signing-cert-file",
                self.pki.ca,
                "--cluster-signing-key-file",
                self.pki.ca_key,
                "--agent-client-certificate",
                self.pki.cert("apiserver-agent-client"),
                "--agent-client-key",
                self.pki.key("apiserver-agent-client"),
                "--etcd-cafile",
                self.pki.etcd_ca,
                "--etcd-certfile",
                self.pki.cert("apiserver-etcd-client"),
                "--etcd-keyfile",
                self.pki.key("apiserver-etcd-client"),
                "--etcd-startup-timeout",
                "60",
                "--default-unreachable-toleration-seconds",
                str(TOLERATION_SECONDS),
                "--default-not-ready-toleration-seconds",
                str(TOLERATION_SECONDS),
            ],
        )

    def start_scheduler(self, host: Host) -> None:
        self.start(
            f"scheduler-{host.name}",
            host,
            [
                str(BIN / "navarch-scheduler"),
                "--server",
                self.apis,
                "--leader-elect",
                "--lease-duration",
                str(LEASE_SECONDS),
                "--listen",
                "127.0.0.1:0",
                *self._tls_client("scheduler"),
            ],
        )

    def start_controller_manager(self, host: Host) -> None:
        self.start(
            f"controller-manager-{host.name}",
            host,
            [
                str(BIN / "navarch-controller-manager"),
                "--server",
                self.apis,
                "--leader-elect",
                "--lease-duration",
                str(LEASE_SECONDS),
                "--listen",
                "127.0.0.1:0",
                "--node-monitor-grace-period",
                f"{NODE_GRACE_SECONDS}s",
                "--node-monitor-period",
                "1s",
                "--node-eviction-rate",
                "10",
                *self._tls_client("controller-manager"),
            ],
        )

    def start_agent(self, host: Host) -> None:
        self.start(
            f"agent-{host.name}",
            host,
            [
                str(BIN / "navarch-agent"),
                "--server",
                self.apis,
                "--node-name",
                f"w-{host.name}",
                "--node-ip",
                host.ip,
                "--listen",
                f"{host.ip}:0",
                "--data-dir",
                str(self.base / host.name / "agent"),
                "--lease-interval",
                "1",
                "--no-cgroups",
                "--run-as-user",
                "0",
                "--run-as-group",
                "0",
                "--join-token",
                self.join_token,
                "--ca-cert-hash",
                pki.ca_cert_hash(pki.load_cert(Path(self.pki.ca).read_bytes())),
                "--bootstrap-server",
                f"{self.control[0].ip}:6444",
            ],
        )

    def kill(self, name: str) -> None:
        """SIGKILL one daemon (as a crash would)."""
        proc = self.procs[name]
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=10)

    def navarch(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """The CLI on the operator's host, against every API server."""
        argv = ["ip", "netns", "exec", self.operator.netns, str(BIN / "navarch"), "--server", self.apis, *args]
        env = {**os.environ, "NAVARCH_CONFIG": str(self.cli_config)}
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False, env=env)

    def get_json(self, *args: str) -> Any:
        """``navarch get ... -o json``, parsed (retried briefly: a failover may be under way)."""
        for _ in range(20):
            out = self.navarch("get", *args, "-o", "json")
            if out.returncode == 0:
                return json.loads(out.stdout)
            time.sleep(0.5)
        raise AssertionError(f"navarch get {' '.join(args)}: {out.stderr}")

    def holds(self, what: str, condition: Any, seconds: float, interval: float = 0.5) -> None:
        """Require ``condition()`` to be true at every check for ``seconds`` (a stability window, not one
        instant); fails at the first violation, saying when it came."""
        began = time.monotonic()
        while True:
            if not condition():
                raise AssertionError(f"{what} stopped holding {time.monotonic() - began:.1f}s into its {seconds:.0f}s")
            if time.monotonic() - began >= seconds:
                return
            time.sleep(interval)

    def etcd_keys(self, host: Host, prefix: str) -> int:
        """How many keys under ``prefix`` one etcd member holds, read from that member alone (serializable)."""
        import base64 as b64

        key = b64.b64encode(prefix.encode()).decode()
        end = b64.b64encode(prefix[:-1].encode() + bytes([ord(prefix[-1]) + 1])).decode()
        argv = [
            "ip",
            "netns",
            "exec",
            host.netns,
            sys.executable,
            "-c",
            "import json,ssl,urllib.request;"
            f"c=ssl.create_default_context(cafile='{self.pki.etcd_ca}');"
            f"c.load_cert_chain('{self.pki.cert('apiserver-etcd-client')}','{self.pki.key('apiserver-etcd-client')}');"
            f"r=urllib.request.urlopen(urllib.request.Request('https://{host.ip}:2379/v3/kv/range',"
            f"data=json.dumps({{'key':'{key}','range_end':'{end}','serializable':True,'count_only':True}}).encode()),"
            "timeout=2,context=c);"
            "print(json.load(r).get('count','0'))",
        ]
        out = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
        assert out.returncode == 0, out.stderr
        return int(out.stdout.strip())

    def wait(self, what: str, condition: Any, timeout: float = 90.0) -> float:
        """Poll ``condition()`` until true; seconds it took. Fails naming ``what``."""
        began = time.monotonic()
        delay = 0.2
        while True:
            if condition():
                return time.monotonic() - began
            if time.monotonic() - began > timeout:
                raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
            time.sleep(delay)
            delay = min(delay * 1.5, 1.0)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MultiHostCluster]:
    """The whole topology, up and with three Ready workers."""
    base = tmp_path_factory.mktemp("multihost")
    with HostNetwork(7) as net:
        ips = [h.ip for h in net.hosts[:3]]
        cluster_pki = init_cluster_pki(base / "pki", apiserver_sans=Sans(ips=ips), etcd_sans=Sans(ips=ips))
        c = MultiHostCluster(net, base, cluster_pki)
        c.write_cli_config()
        for h in c.control:
            c.start_etcd(h)
        for h in c.control:
            c.start_apiserver(h)
        for h in c.control[:2]:
            c.start_scheduler(h)
            c.start_controller_manager(h)

        def token_created() -> bool:
            out = c.navarch("token", "create", "--ttl", "1h")
            c.join_token = out.stdout.strip()
            return out.returncode == 0

        c.wait("a bootstrap token (the API servers are up)", token_created, timeout=60)
        for h in c.workers:
            c.start_agent(h)

        def workers_ready() -> bool:
            out = c.navarch("get", "nodes")
            return out.returncode == 0 and out.stdout.count(" Ready ") == 3

        c.wait("three Ready workers", workers_ready, timeout=120)
        yield c
