"""The multihost tier: real daemons in network namespaces (deploy/netns), one per simulated host.

Topology: h1-h3 control plane (an etcd member and an API server each; scheduler and controller manager on
h1 and h2, leader-elected), h4-h6 workers (agents), h7 the operator's host (the CLI runs there). Needs root;
skipped with the reason otherwise. Short timings so failures are noticed in seconds: node grace 6 s,
toleration 3 s, leader leases 4 s.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from controlplane.launcher.etcd import find_etcd_binary
from deploy.netns import Host, HostNetwork, netns_available

BIN = Path(sys.executable).parent
LEASE_SECONDS = 4


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
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

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
                "import json,urllib.request;"
                f"r=urllib.request.urlopen(urllib.request.Request('http://{h.ip}:2379/v3/kv/range',"
                "data=json.dumps({'key':'Lw==','serializable':True}).encode()),timeout=2);"
                "print(json.load(r)['header']['revision'])",
            ]
            out = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
            if out.returncode != 0:
                return False
            revisions.add(out.stdout.strip())
        return len(revisions) == 1

    def start_etcd(self, host: Host, state: str = "new") -> None:
        peers = ",".join(f"e{h.name}=http://{h.ip}:2380" for h in self.control)
        self.start(
            f"etcd-{host.name}",
            host,
            [
                find_etcd_binary(),
                f"--name=e{host.name}",
                f"--data-dir={self.base / host.name / 'etcd'}",
                f"--listen-client-urls=http://{host.ip}:2379",
                f"--advertise-client-urls=http://{host.ip}:2379",
                f"--listen-peer-urls=http://{host.ip}:2380",
                f"--initial-advertise-peer-urls=http://{host.ip}:2380",
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
                "--insecure-allow-non-loopback",
                "--etcd-startup-timeout",
                "60",
                "--default-unreachable-toleration-seconds",
                "3",
                "--default-not-ready-toleration-seconds",
                "3",
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
                "6s",
                "--node-monitor-period",
                "1s",
                "--node-eviction-rate",
                "10",
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
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)

    def get_json(self, *args: str) -> Any:
        """``navarch get ... -o json``, parsed (retried briefly: a failover may be under way)."""
        for _ in range(20):
            out = self.navarch("get", *args, "-o", "json")
            if out.returncode == 0:
                return json.loads(out.stdout)
            time.sleep(0.5)
        raise AssertionError(f"navarch get {' '.join(args)}: {out.stderr}")

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
        c = MultiHostCluster(net, base)
        for h in c.control:
            c.start_etcd(h)
        for h in c.control:
            c.start_apiserver(h)
        for h in c.control[:2]:
            c.start_scheduler(h)
            c.start_controller_manager(h)
        for h in c.workers:
            c.start_agent(h)

        def workers_ready() -> bool:
            out = c.navarch("get", "nodes")
            return out.returncode == 0 and out.stdout.count(" Ready ") == 3

        c.wait("three Ready workers", workers_ready, timeout=120)
        yield c
