"""``navarch-agent``: flags, then the agent until SIGTERM."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
import signal
import sys
import tempfile
from pathlib import Path

import click

from controlplane import addresses
from controlplane.api.errors import ApiError
from controlplane.api.quantity import parse_quantity
from controlplane.client.client import ApiClient, ClientConfig
from nodeagent.agent import Agent, default_node_name
from nodeagent.certificates import JoinConfig, JoinError, NodeTLSConfig
from nodeagent.config import AgentConfig
from nodeagent.hollow import HollowNodes
from nodeagent.node import address_towards

log = logging.getLogger("navarch.agent")


def _pairs(text: str, what: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in filter(None, (p.strip() for p in text.split(","))):
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{item!r}: use key=value", param_hint=what)
        out[key] = value
    return out


def _port_range(text: str) -> tuple[int, int]:
    low, sep, high = text.partition("-")
    if not sep or not low.strip().isdigit() or not high.strip().isdigit():
        raise click.BadParameter(
            f"{text[:40]!r}: expected LOW-HIGH, e.g. 20000-29999", param_hint="--dynamic-port-range"
        )
    lo, hi = int(low), int(high)
    if not 1 <= lo <= hi <= 65535:
        raise click.BadParameter(f"{lo}-{hi}: must be within 1-65535, low first", param_hint="--dynamic-port-range")
    return lo, hi


def _taints(text: str) -> list[tuple[str, str, str]]:
    out: list[tuple[str, str, str]] = []
    for item in filter(None, (p.strip() for p in text.split(","))):
        kv, sep, effect = item.rpartition(":")
        if not sep or effect not in ("NoSchedule", "PreferNoSchedule", "NoExecute"):
            raise click.BadParameter(
                f"{item!r}: use key=value:Effect (NoSchedule, PreferNoSchedule, NoExecute)", param_hint="--taints"
            )
        key, _, value = kv.partition("=")
        out.append((key, value, effect))
    return out


def _quantities(text: str, what: str) -> dict[str, str]:
    values = _pairs(text, what)
    for key, value in values.items():
        try:
            parse_quantity(value)
        except ValueError as err:
            raise click.BadParameter(f"{key}: {err}", param_hint=what) from None
    return values


def _node_tls(
    cert_dir: Path,
    ca: str | None,
    cert: str | None,
    key: str | None,
    token: str | None,
    pin: str | None,
    bootstrap: str | None,
) -> NodeTLSConfig | None:
    """The TLS flags as a NodeTLSConfig (None: plain text); usage errors name the missing flag."""
    if bool(cert) != bool(key):
        raise click.UsageError("--client-certificate and --client-key go together")
    if cert and not ca:
        raise click.UsageError("--client-certificate needs --certificate-authority")
    join = None
    if token:
        if not pin or not bootstrap:
            raise click.UsageError("--join-token needs --ca-cert-hash and --bootstrap-server")
        if not pin.startswith("sha256:") or len(pin) != 71:
            raise click.BadParameter("expected sha256:<64 hex digits>", param_hint="--ca-cert-hash")
        join = JoinConfig(token, pin, bootstrap)
    has_stored = (cert_dir / "node.pem").exists()
    if not (ca or join or has_stored):
        return None
    return NodeTLSConfig(cert_dir, join, ca, cert, key)


def _warn_if_unreachable(config: AgentConfig) -> None:
    """Workloads run as an unprivileged user reach volumes by absolute path: say so if they cannot."""
    if os.geteuid() != 0 or config.run_as_user in (None, 0):
        return
    closed = [p for p in [config.data_dir, *config.data_dir.parents] if not p.stat().st_mode & 0o001]
    if closed:
        log.warning(
            "workloads run as uid %s cannot pass through %s (no o+x): volumes are reachable only from their working "
            "directory; chmod o+x it or choose another --data-dir",
            config.run_as_user,
            closed[0],
        )


async def serve(config: AgentConfig) -> None:
    """Run the agent until SIGINT/SIGTERM."""
    agent = Agent(config)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    # Starting may wait a long time (an API server not up yet, retried with back-off): a signal must end
    # that wait too, not only a running agent.
    starting = asyncio.create_task(agent.start(), name="agent-start")
    stopper = asyncio.create_task(stop.wait(), name="stop-signal")
    try:
        await asyncio.wait([starting, stopper], return_when=asyncio.FIRST_COMPLETED)
        if starting.done():
            starting.result()  # a start-up error ends the agent with its message
            log.info(
                "agent for node %s (%s) running, serving on port %d; data in %s",
                config.node_name,
                config.node_ip,
                agent.node.agent_port,
                config.data_dir,
            )
            await stopper
        else:
            log.info("stopping before the agent finished starting")
    finally:
        for task in (starting, stopper):
            task.cancel()
        await asyncio.gather(starting, stopper, return_exceptions=True)
        await agent.stop()


async def serve_hollow(config: AgentConfig, count: int, prefix: str, *, shared_watch: bool = False) -> None:
    """Run ``count`` hollow nodes until SIGINT/SIGTERM."""
    client = ApiClient(ClientConfig(endpoints=config.servers))
    nodes = HollowNodes(client, config, count, prefix, shared_watch=shared_watch)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    task = asyncio.create_task(nodes.run(), name="hollow-nodes")
    stopper = asyncio.create_task(stop.wait(), name="stop-signal")
    try:
        await asyncio.wait([task, stopper], return_when=asyncio.FIRST_COMPLETED)
        if task.done() and task.exception() is not None:
            raise task.exception()  # type: ignore[misc]
    finally:
        for t in (task, stopper):
            t.cancel()
        await asyncio.gather(task, stopper, return_exceptions=True)
        await client.close()


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@addresses.servers_option
@click.option("--node-name", default=None, help="Node name (default: the host name).")
@click.option("--node-ip", default=None, help="Node IP (default: the address used to reach the API server).")
@click.option("--data-dir", type=click.Path(file_okay=False), default=None, help="Sandboxes, logs and state.")
@click.option("--labels", default="", help="Extra node labels: k=v,...")
@click.option("--taints", default="", help="Node taints: k=v:Effect,...")
@click.option("--capacity", default="", help="Override detected capacity: cpu=4,memory=8Gi,pods=110")
@click.option("--reserved", default="cpu=100m,memory=256Mi", show_default=True, help="Held back from allocatable.")
@click.option(
    "--artifact-cache-mib",
    type=click.IntRange(min=1),
    default=2048,
    show_default=True,
    help="Size of the node's artifact cache; least recently used artifacts go beyond it.",
)
@click.option(
    "--artifact-timeout",
    type=click.FloatRange(min=1),
    default=300.0,
    show_default=True,
    help="Seconds one artifact's fetch may take, retries included.",
)
@click.option("--artifact-ca-file", default=None, help="CA bundle for https artifacts (default: the system's).")
@click.option(
    "--artifact-file-urls",
    is_flag=True,
    help="Allow file:// artifact URLs (a pod could then read any node file whose hash it knows: tests only).",
)
@click.option(
    "--dynamic-port-range",
    default="20000-29999",
    show_default=True,
    help="Host ports for containerPort 0 (keep it clear of the NodePort range and of ephemeral ports).",
)
@addresses.listen_option("0.0.0.0:10250", "The agent's gRPC endpoint (logs, exec).")
@click.option(
    "--proxy-from",
    default="",
    help="Networks (CIDR, comma separated) allowed to call the agent (default: the API servers' addresses).",
)
@click.option(
    "--lease-interval",
    type=click.FloatRange(min=0.1),
    default=10.0,
    show_default=True,
    help="Seconds between node Lease renewals.",
)
@click.option(
    "--lease-duration",
    type=click.IntRange(min=1),
    default=40,
    show_default=True,
    help="leaseDurationSeconds of the node Lease: past it without renewal the node counts as unreachable.",
)
@click.option(
    "--backoff-initial",
    type=click.FloatRange(min=0.01),
    default=10.0,
    show_default=True,
    help="CrashLoopBackOff first delay (seconds).",
)
@click.option(
    "--backoff-max",
    type=click.FloatRange(min=0.01),
    default=300.0,
    show_default=True,
    help="CrashLoopBackOff longest delay (seconds).",
)
@click.option(
    "--volume-refresh",
    type=click.FloatRange(min=0.1),
    default=10.0,
    show_default=True,
    help="Seconds between refreshes of configMap and secret volumes.",
)
@click.option("--log-max-bytes", type=click.IntRange(min=1024), default=10 * 1024 * 1024, show_default=True)
@click.option("--log-keep", type=click.IntRange(min=0), default=3, show_default=True)
@click.option("--drain-on-exit", is_flag=True, help="Stop every pod when the agent stops.")
@click.option(
    "--service-proxy/--no-service-proxy",
    default=True,
    show_default=True,
    help="Serve Services' cluster IPs and node ports on this node.",
)
@click.option(
    "--proxy-balance",
    type=click.Choice(["round-robin", "least-connections"]),
    default="round-robin",
    show_default=True,
    help="How the node proxy picks a Service backend.",
)
@click.option(
    "--cgroups/--no-cgroups",
    default=True,
    show_default=True,
    help="Enforce limits with cgroups where writable (else setrlimit for memory).",
)
@click.option("--hollow", is_flag=True, help="Simulate --count nodes in this process (scale tests only).")
@click.option("--count", type=click.IntRange(min=1), default=1, show_default=True, help="Hollow nodes to run.")
@click.option("--name-prefix", default="hollow-", show_default=True, help="Hollow node names: PREFIX0, PREFIX1...")
@click.option(
    "--hollow-watch",
    type=click.Choice(["per-node", "shared"]),
    default="per-node",
    show_default=True,
    help="per-node: each hollow node watches its own pods, as real agents do; shared: one pod watch for all "
    "(lighter for this process, but the API server then serves one watch instead of one per node).",
)
@click.option(
    "--certificate-authority", type=click.Path(exists=True, dir_okay=False), help="Cluster CA (with a pre-issued cert)."
)
@click.option("--client-certificate", type=click.Path(exists=True, dir_okay=False), help="Pre-issued node certificate.")
@click.option("--client-key", type=click.Path(exists=True, dir_okay=False), help="Its key.")
@click.option("--join-token", envvar="NAVARCH_JOIN_TOKEN", help="Bootstrap token (navarch token create).")
@click.option("--ca-cert-hash", help="sha256:<hex> pin of the cluster CA (navarch token create prints it).")
@click.option(
    "--bootstrap-server",
    callback=addresses.address_option_callback,
    help="API server token port to join through (host:port).",
)
@click.option("--cert-dir", type=click.Path(file_okay=False), help="Node certificate directory (default DATA_DIR/pki).")
@click.option(
    "--run-as-user",
    type=click.IntRange(min=0),
    default=65534,
    show_default=True,
    help="UID of workloads without runAsUser when the agent is root.",
)
@click.option("--run-as-group", type=click.IntRange(min=0), default=65534, show_default=True)
@click.option("--refuse-root-workloads", is_flag=True, help="Fail pods that would run as uid 0.")
@addresses.metrics_listen_option("")
@click.option(
    "--usage-interval",
    type=click.FloatRange(min=1.0),
    default=10.0,
    show_default=True,
    help="Seconds between samples of node and container usage (navarch top, autoscaling).",
)
@click.option("-v", "--verbose", is_flag=True)
def main(
    servers: list[str],
    node_name: str | None,
    node_ip: str | None,
    data_dir: str,
    labels: str,
    taints: str,
    capacity: str,
    reserved: str,
    artifact_cache_mib: int,
    artifact_timeout: float,
    artifact_ca_file: str | None,
    artifact_file_urls: bool,
    dynamic_port_range: str,
    listen: str,
    proxy_from: str,
    lease_interval: float,
    lease_duration: int,
    backoff_initial: float,
    backoff_max: float,
    volume_refresh: float,
    log_max_bytes: int,
    log_keep: int,
    drain_on_exit: bool,
    service_proxy: bool,
    proxy_balance: str,
    cgroups: bool,
    hollow: bool,
    count: int,
    name_prefix: str,
    hollow_watch: str,
    certificate_authority: str | None,
    client_certificate: str | None,
    client_key: str | None,
    join_token: str | None,
    ca_cert_hash: str | None,
    bootstrap_server: str | None,
    cert_dir: str | None,
    run_as_user: int,
    run_as_group: int,
    refuse_root_workloads: bool,
    metrics_listen: str,
    usage_interval: float,
    verbose: bool,
) -> None:
    """Run pods bound to this node as supervised local processes."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    endpoints = servers
    if data_dir is None:
        if not hollow:
            raise click.UsageError("Missing option '--data-dir' (needed unless --hollow).")
        data_dir = tempfile.mkdtemp(prefix="navarch-hollow-")
    networks = [n.strip() for n in proxy_from.split(",") if n.strip()]
    for net in networks:
        try:
            ipaddress.ip_network(net, strict=False)
        except ValueError as err:
            raise click.BadParameter(str(err), param_hint="--proxy-from") from None
    tls = _node_tls(
        Path(cert_dir or Path(data_dir) / "pki").resolve(),
        certificate_authority,
        client_certificate,
        client_key,
        join_token,
        ca_cert_hash,
        bootstrap_server,
    )
    ip = node_ip or address_towards(endpoints[0])
    host, _, port = listen.rpartition(":")
    if tls is None and host in ("0.0.0.0", "", "[::]"):
        listen = f"{ip}:{port}"  # plain text stays on the node's (loopback) address; TLS may listen everywhere
    config = AgentConfig(
        servers=endpoints,
        node_name=node_name or default_node_name(),
        node_ip=ip,
        data_dir=Path(data_dir).resolve(),
        labels=_pairs(labels, "--labels"),
        taints=_taints(taints),
        capacity=_quantities(capacity, "--capacity"),
        reserved=_quantities(reserved, "--reserved"),
        dynamic_ports=_port_range(dynamic_port_range),
        artifact_cache_bytes=artifact_cache_mib << 20,
        artifact_timeout=artifact_timeout,
        artifact_ca_file=artifact_ca_file,
        artifact_file_urls=artifact_file_urls,
        listen=listen,
        proxy_from=networks,
        lease_interval=lease_interval,
        lease_duration=lease_duration,
        backoff_initial=backoff_initial,
        backoff_max=max(backoff_max, backoff_initial),
        log_max_bytes=log_max_bytes,
        volume_refresh=volume_refresh,
        log_keep=log_keep,
        drain_on_exit=drain_on_exit,
        service_proxy=service_proxy,
        proxy_balance=proxy_balance,
        cgroups=cgroups,
        tls=tls,
        run_as_user=run_as_user,
        run_as_group=run_as_group,
        refuse_root=refuse_root_workloads,
        metrics_listen="" if hollow else metrics_listen,
        usage_interval=usage_interval,
    )
    try:
        config.data_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise click.BadParameter(f"{data_dir!r}: {err.strerror}", param_hint="--data-dir") from None
    _warn_if_unreachable(config)
    try:
        hollow_run = serve_hollow(config, count, name_prefix, shared_watch=hollow_watch == "shared") if hollow else None
        asyncio.run(hollow_run if hollow_run is not None else serve(config))
    except ApiError as err:
        click.echo(f"navarch-agent: {err.message}", err=True)
        sys.exit(1)
    except (JoinError, OSError, ValueError) as err:
        click.echo(f"navarch-agent: {err}", err=True)
        sys.exit(1)
