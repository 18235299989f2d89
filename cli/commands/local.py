"""``navarch up`` / ``navarch down``: a whole cluster on this machine, for trying Navarch and developing it.

``up`` starts a supervisor process (``controlplane.launcher.localcluster``) in its own session, waits until
every node is Ready, points the CLI's ``navarch-local`` context at it and prints what runs where. ``down``
stops it (workloads included); ``--purge`` also removes its data and the context.
"""

from __future__ import annotations

import asyncio
import os
import pwd
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import click

from cli import config as cfg
from cli.commands.common import DURATION
from cli.context import fail
from controlplane import transport
from controlplane.api.conditions import node_ready
from controlplane.api.errors import ApiError
from controlplane.api.pb import core_pb2
from controlplane.client.client import ApiClient, ClientConfig
from controlplane.clusterpki import ClusterPki
from controlplane.launcher.localcluster import pid_alive, read_state, running_supervisor
from nodeagent.identity import closed_to_others

CONTEXT = "navarch-local"


def default_data_dir() -> Path:
    """``$XDG_DATA_HOME/navarch/local`` (``~/.local/share/navarch/local``)."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "navarch" / "local"


data_dir_option = click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=default_data_dir,
    show_default="~/.local/share/navarch/local",
    help="Where the cluster keeps its data and logs.",
)


def _tls(pki_dir: str) -> transport.ChannelTLS | None:
    if not pki_dir:
        return None
    c = ClusterPki(Path(pki_dir))
    return transport.ChannelTLS(c.ca, c.cert("admin"), c.key("admin"))


async def _ready_nodes(api: str, pki_dir: str) -> int:
    client = ApiClient(ClientConfig(endpoints=[api], timeout=3, max_attempts=1, tls=_tls(pki_dir)))
    try:
        nodes = (await client.list(core_pb2.Node)).items
        return sum(1 for n in nodes if node_ready(n) == "True")
    except ApiError:
        return 0
    finally:
        await client.close()


def _uid(value: str) -> int:
    """A uid from a number or a user name (``--run-as-user``)."""
    if value.isdigit():
        return int(value)
    try:
        return pwd.getpwnam(value).pw_uid
    except KeyError:
        raise click.BadParameter(f"no such user: {value!r}") from None


def _user_name(uid: int) -> str:
    try:
        return f"{pwd.getpwuid(uid).pw_name} (uid {uid})"
    except KeyError:
        return f"uid {uid}"


def _log_tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


@click.command()
@click.option("--agents", type=click.IntRange(1, 200), default=3, show_default=True, help="Nodes to run.")
@click.option("--etcd-members", type=click.Choice(["1", "3"]), default="1", show_default=True)
@click.option("--port", type=click.IntRange(1, 65535), default=6443, show_default=True, help="API server port.")
@click.option(
    "--timeout", type=DURATION, default=120.0, show_default=True, help="How long to wait for Ready nodes (e.g. 2m)."
)
@click.option(
    "--insecure",
    is_flag=True,
    help="FOR TESTS ONLY: plain text on loopback, no authentication — any local user can run anything as you.",
)
@click.option(
    "--run-as-user",
    "run_as_user",
    metavar="USER",
    callback=lambda ctx, param, value: None if value is None else _uid(value),
    help="User (name or uid) of workloads without securityContext.runAsUser. Default: nobody when you are "
    "root (a pod asks for root with runAsUser: 0), else yourself.",
)
@data_dir_option
def up(
    agents: int,
    etcd_members: str,
    port: int,
    timeout: float,
    insecure: bool,
    run_as_user: int | None,
    data_dir: Path,
) -> None:
    """Start a local cluster: etcd, API server, scheduler, controller manager and agents on 127.0.0.2, ...

    Everything talks mutual TLS with certificates made in DATA_DIR/pki (readable by you only); the CLI's
    navarch-local context gets the admin certificate. Started by root, it runs workloads as nobody unless
    a pod asks for another user."""
    data_dir = data_dir.resolve()
    running = running_supervisor(data_dir)
    if running is not None:
        fail(
            f"a cluster is already running from {data_dir} (API server {running.get('api')}, supervisor pid "
            f"{running.get('pid')}); use it, or stop it with `navarch down`"
        )
    data_dir.mkdir(parents=True, exist_ok=True)
    log_path = data_dir / "supervisor.log"
    argv = [
        sys.executable,
        "-m",
        "controlplane.launcher.localcluster",
        "--data-dir",
        str(data_dir),
        "--agents",
        str(agents),
        "--etcd-members",
        etcd_members,
        "--port",
        str(port),
        *(["--insecure"] if insecure else []),
        *(["--run-as-user", str(run_as_user)] if run_as_user is not None else []),
    ]
    if insecure:
        click.echo("WARNING: --insecure: no TLS, no authentication; any local user can act as cluster admin", err=True)
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
        )
    click.echo(f"starting a local cluster in {data_dir} ...")
    api = f"127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    delay = 0.2
    while True:
        if proc.poll() is not None:
            fail(f"the local cluster stopped while starting; {log_path} says:\n{_log_tail(log_path)}")
        state = read_state(data_dir) or {}
        if state.get("phase") == "ready" and asyncio.run(_ready_nodes(api, str(state.get("pki", "")))) >= agents:
            break
        if time.monotonic() > deadline:
            fail(
                f"the cluster's {agents} node(s) were not Ready within {timeout:.0f}s; it keeps running "
                f"(`navarch down` stops it). Logs: {data_dir / 'logs'}"
            )
        time.sleep(delay)
        delay = min(delay * 1.5, 1.0)
    data = cfg.load()
    pki_dir = str(state.get("pki", ""))
    if pki_dir:
        c = ClusterPki(Path(pki_dir))
        cfg.upsert(data, "clusters", CONTEXT, server=api, certificate_authority=c.ca)
        cfg.upsert(data, "users", CONTEXT, client_certificate=c.cert("admin"), client_key=c.key("admin"))
        cfg.upsert(data, "contexts", CONTEXT, cluster=CONTEXT, user=CONTEXT, namespace="default")
    else:
        cluster = cfg.upsert(data, "clusters", CONTEXT, server=api)
        cluster.pop("certificate-authority", None)
        cfg.upsert(data, "contexts", CONTEXT, cluster=CONTEXT, namespace="default")
        data["contexts"] = [
            {k: v for k, v in e.items() if k != "user" or e.get("name") != CONTEXT} for e in data["contexts"]
        ]
    scheme = str(state.get("metrics_scheme", "https"))
    metrics = {name: f"{scheme}://{address}" for name, address in dict(state.get("metrics", {})).items()}
    cfg.upsert(data, "clusters", CONTEXT, metrics=metrics)
    data["current-context"] = CONTEXT
    cfg.save(data)
    logs = data_dir / "logs"
    click.echo(f"\netcd                 {', '.join(state.get('etcd', []))}   data in {data_dir / 'etcd'}")
    click.echo(f"navarch-apiserver    {api}   log {logs / 'apiserver.log'}")
    click.echo(f"navarch-scheduler    leader-elected   log {logs / 'scheduler.log'}")
    click.echo(f"controller-manager   leader-elected   log {logs / 'controller-manager.log'}")
    for node in state.get("nodes", []):
        click.echo(f"navarch-agent        node {node['name']} on {node['ip']}   log {logs / (node['name'] + '.log')}")
    run_as = state.get("run_as") or [os.geteuid()]
    click.echo(f"workloads            run as {_user_name(int(run_as[0]))} unless a pod sets runAsUser")
    closed = closed_to_others(data_dir)
    if int(run_as[0]) != os.geteuid() and closed is not None:
        click.echo(
            f"WARNING: {closed} is closed to other users (no o+x): workloads reach their volumes through their "
            "working directory (./<mountPath>) but not by absolute path (NAVARCH_VOLUME_*); choose a --data-dir "
            "outside it (e.g. /var/lib/navarch/local) or --run-as-user",
            err=True,
        )
    click.echo(f"Prometheus           scrape configuration in {data_dir / 'prometheus.yml'} (navarch cluster-info)")
    click.echo(
        f'\nThe CLI now uses the context "{CONTEXT}" ({api}). Try:\n'
        "  navarch get nodes\n"
        "  navarch apply -f deploy/examples/\n"
        "  navarch get pods -o wide\n"
        "Stop it with `navarch down` (add --purge to remove its data)."
    )


@click.command()
@click.option("--purge", is_flag=True, help="Also remove the cluster's data, logs and CLI context.")
@click.option("--timeout", type=DURATION, default=60.0, show_default=True)
@data_dir_option
def down(purge: bool, timeout: float, data_dir: Path) -> None:
    """Stop the local cluster started by `navarch up` (its workloads too)."""
    data_dir = data_dir.resolve()
    state = running_supervisor(data_dir)
    pid = state.get("pid") if state else None
    if isinstance(pid, int) and pid_alive(pid):
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while pid_alive(pid):
            if time.monotonic() > deadline:
                os.kill(pid, signal.SIGKILL)
                fail(f"the cluster did not stop within {timeout:.0f}s; its supervisor was killed (see {data_dir})")
            time.sleep(0.2)
        click.echo(f"local cluster in {data_dir} stopped")
    else:
        click.echo(f"no local cluster is running from {data_dir}")
    if purge:
        shutil.rmtree(data_dir, ignore_errors=True)
        data = cfg.load()
        for section in ("clusters", "users", "contexts"):
            data[section] = [e for e in data.get(section, []) if e.get("name") != CONTEXT]
        if data.get("current-context") == CONTEXT:
            data["current-context"] = ""
        cfg.save(data)
        click.echo(f"removed {data_dir} and the {CONTEXT} context")
