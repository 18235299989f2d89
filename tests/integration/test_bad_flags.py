"""Every component, fed bad flags or addresses, answers with one line naming the flag and the value and a
non-zero exit: never a Python traceback, never a hang. And ``--etcd-servers`` takes URLs as kube-apiserver and
etcdctl do."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from controlplane.launcher.etcd import EtcdCluster, free_port
from tests.integration.test_apiserver_process import serving_apiserver

BIN = Path(sys.executable).parent

# (component, arguments, what the error's line must name). Values are what careless hands type.
CASES = [
    ("navarch-apiserver", ["--etcd-servers", "http://127.0.0.1:2379,https://10.0.0.2:2379"], "--etcd-servers"),
    ("navarch-apiserver", ["--etcd-servers", "https://127.0.0.1:2379"], "--etcd-cafile"),
    ("navarch-apiserver", ["--etcd-servers", "ftp://127.0.0.1:2379"], "ftp://127.0.0.1:2379"),
    ("navarch-apiserver", ["--etcd-servers", "127.0.0.1:99999"], "127.0.0.1:99999"),
    ("navarch-apiserver", ["--etcd-servers", "no-such-host.invalid:2379"], "no-such-host.invalid:2379"),
    ("navarch-apiserver", ["--etcd-servers", "[::1]:2379"], "[::1]:2379"),
    ("navarch-apiserver", ["--listen", "127.0.0.1:notaport"], "127.0.0.1:notaport"),
    ("navarch-apiserver", ["--listen", "garbage"], "garbage"),
    ("navarch-apiserver", ["--token-listen", "a b:1"], "--token-listen"),
    ("navarch-apiserver", ["--request-timeout", "soon"], "soon"),
    ("navarch-apiserver", ["--service-cluster-ip-range", "10.0.0.0/33"], "--service-cluster-ip-range"),
    ("navarch-apiserver", ["--watch-cache-window", "-1"], "--watch-cache-window"),
    ("navarch-scheduler", ["--server", "garbage"], "garbage"),
    ("navarch-scheduler", ["--server", "127.0.0.1:6443,"], None),  # a trailing comma is fine: see below
    ("navarch-scheduler", ["--listen", "1.2.3.4.5:10259"], "1.2.3.4.5"),
    ("navarch-scheduler", ["--config", "/nonexistent/scheduler.yaml"], "/nonexistent/scheduler.yaml"),
    ("navarch-scheduler", ["--lease-duration", "zero"], "--lease-duration"),
    ("navarch-controller-manager", ["--server", ":::"], "--server"),
    ("navarch-controller-manager", ["--listen", "127.0.0.1:70000"], "127.0.0.1:70000"),
    ("navarch-controller-manager", ["--node-monitor-period", "abc"], "abc"),
    ("navarch-controller-manager", ["--controllers", "replicaset,nosuch"], "nosuch"),
    ("navarch-agent", ["--server", "garbage", "--data-dir", "{tmp}"], "garbage"),
    ("navarch-agent", ["--listen", "0.0.0.0:-1", "--data-dir", "{tmp}"], "0.0.0.0:-1"),
    ("navarch-agent", ["--bootstrap-server", "x", "--data-dir", "{tmp}"], "--bootstrap-server"),
    ("navarch-agent", ["--capacity", "cpu=lots", "--data-dir", "{tmp}"], "lots"),
    ("navarch-agent", ["--taints", "a=b:Sometimes", "--data-dir", "{tmp}"], "a=b:Sometimes"),
    ("navarch-agent", ["--data-dir", "/proc/no/such/dir"], "/proc/no/such/dir"),
    ("navarch-agent", ["--proxy-from", "10.0.0.0/99", "--data-dir", "{tmp}"], "--proxy-from"),
    ("navarch", ["--server", "garbage", "get", "pods"], "garbage"),
    ("navarch", ["--server", "127.0.0.1:1,foo:bar", "get", "pods"], "foo:bar"),
    ("navarch", ["--request-timeout", "-1", "get", "pods"], "--request-timeout"),
    ("navarch", ["--server", "127.0.0.1:1", "--request-timeout", "2", "get", "pods"], "127.0.0.1:1"),
    ("navarch", ["get", "pods", "-o", "bogus", "--server", "127.0.0.1:1"], None),
]


@pytest.mark.parametrize(("component", "args", "named"), [c for c in CASES if c[2] is not None])
def test_a_bad_flag_is_one_line_naming_it(component: str, args: list[str], named: str, tmp_path: Path) -> None:
    argv = [str(BIN / component), *(a.replace("{tmp}", str(tmp_path)) for a in args)]
    if component == "navarch-apiserver":
        argv.append("--insecure")  # else the first complaint is the missing TLS flags
    out = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False, cwd=tmp_path)
    assert out.returncode != 0, out.stdout + out.stderr
    assert "Traceback" not in out.stderr and "Traceback" not in out.stdout, out.stderr
    lines = [line for line in out.stderr.splitlines() if line.strip() and not line.startswith(("Usage:", "Try "))]
    # Log lines (timestamps) may come first; the reason is the last line, and only one line gives it.
    reason = [line for line in lines if not line[:4].isdigit()]
    assert len(reason) == 1, out.stderr
    assert named in reason[0], reason[0]


def _serves(etcd_servers: str) -> None:
    with serving_apiserver(etcd_servers):
        pass


@pytest.mark.parametrize("form", ["http://{ep}", "http://{ep}/", "{ep}", "http://localhost:{port}"])
def test_etcd_servers_as_urls(etcd_cluster: EtcdCluster, form: str) -> None:
    (endpoint,) = etcd_cluster.endpoints
    port = endpoint.rpartition(":")[2]
    _serves(form.format(ep=endpoint, port=port))


def test_etcd_servers_list_of_urls_with_a_dead_member(etcd_cluster: EtcdCluster) -> None:
    """A comma list of URLs, one of them down: the server starts on the member that answers."""
    _serves(f"http://127.0.0.1:{free_port()},http://{etcd_cluster.endpoints[0]}")


def test_etcd_servers_by_host_name(etcd_cluster: EtcdCluster) -> None:
    """A member given by name (not ``localhost``, which is special-cased) is resolved at start."""
    name = socket.gethostname()
    try:
        resolved = str(socket.getaddrinfo(name, None, family=socket.AF_INET)[0][4][0])
    except OSError:
        resolved = ""
    if not resolved.startswith("127."):
        pytest.skip(f"this host's name {name!r} does not resolve to a loopback address, where etcd listens")
    port = etcd_cluster.endpoints[0].rpartition(":")[2]
    _serves(f"http://{name}:{port}")


@pytest.mark.parametrize("component", ["navarch-agent", "navarch-scheduler", "navarch-controller-manager"])
def test_sigterm_ends_a_component_still_waiting_for_its_api_server(component: str, tmp_path: Path) -> None:
    """An unreachable API server is waited for (with back-off), and SIGTERM ends that wait promptly and
    cleanly (found: an agent waiting to register ignored SIGTERM for good)."""
    argv = [str(BIN / component), "--server", f"127.0.0.1:{free_port()}", "--listen", "127.0.0.1:0"]
    if component == "navarch-agent":
        argv += ["--data-dir", str(tmp_path / "agent")]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        time.sleep(3)
        assert proc.poll() is None, proc.communicate()[0]
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert "Traceback" not in out, out
    assert proc.returncode in (0, 1), out
