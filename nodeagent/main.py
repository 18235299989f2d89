"""``navarch-agent``: flags, then the agent until SIGTERM."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import click

from controlplane.api.errors import ApiError
from controlplane.api.quantity import parse_quantity
from controlplane.client.client import ApiClient, ClientConfig
from controlplane.client.component import setup_logging, until_signal
from controlplane.client.options import click_options, from_params
from nodeagent.agent import Agent, default_node_name
from nodeagent.certificates import JoinConfig, JoinError, NodeTLSConfig
from nodeagent.config import AgentConfig
from nodeagent.flags import AgentFlags
from nodeagent.hollow import HollowNodes
from nodeagent.identity import closed_to_others
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
    closed = closed_to_others(config.data_dir)
    if closed is not None:
        log.warning(
            "workloads run as uid %s cannot pass through %s (no o+x): volumes are reachable only from their working "
            "directory; chmod o+x it or choose another --data-dir",
            config.run_as_user,
            closed,
        )


async def serve(config: AgentConfig) -> None:
    """Run the agent until SIGINT/SIGTERM."""
    agent = Agent(config)
    try:
        # Starting may wait a long time (an API server not up yet, retried with back-off): a signal must end
        # that wait too, not only a running agent. A start-up error ends the agent with its message.
        if await until_signal(agent.start()):
            log.info("stopping before the agent finished starting")
            return
        log.info(
            "agent for node %s (%s) running, serving on port %d; data in %s",
            config.node_name,
            config.node_ip,
            agent.node.agent_port,
            config.data_dir,
        )
        await until_signal()
    finally:
        await agent.stop()


async def serve_hollow(config: AgentConfig, count: int, prefix: str, *, shared_watch: bool = False) -> None:
    """Run ``count`` hollow nodes until SIGINT/SIGTERM."""
    client = ApiClient(ClientConfig(endpoints=config.servers))
    nodes = HollowNodes(client, config, count, prefix, shared_watch=shared_watch)
    try:
        await until_signal(nodes.run())
    finally:
        await client.close()


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click_options(AgentFlags)
def main(**params: Any) -> None:
    """Run pods bound to this node as supervised local processes."""
    f = from_params(AgentFlags, params)
    data_dir, listen = f.data_dir, f.listen  # both may be settled below
    setup_logging(f.verbose)
    endpoints = f.servers
    if data_dir is None:
        if not f.hollow:
            raise click.UsageError("Missing option '--data-dir' (needed unless --hollow).")
        data_dir = tempfile.mkdtemp(prefix="navarch-hollow-")
    networks = [n.strip() for n in f.proxy_from.split(",") if n.strip()]
    for net in networks:
        try:
            ipaddress.ip_network(net, strict=False)
        except ValueError as err:
            raise click.BadParameter(str(err), param_hint="--proxy-from") from None
    tls = _node_tls(
        Path(f.cert_dir or Path(data_dir) / "pki").resolve(),
        f.certificate_authority,
        f.client_certificate,
        f.client_key,
        f.join_token,
        f.ca_cert_hash,
        f.bootstrap_server,
    )
    ip = f.node_ip or address_towards(endpoints[0])
    host, _, port = listen.rpartition(":")
    if tls is None and host in ("0.0.0.0", "", "[::]"):
        listen = f"{ip}:{port}"  # plain text stays on the node's (loopback) address; TLS may listen everywhere
    config = AgentConfig(
        servers=endpoints,
        node_name=f.node_name or default_node_name(),
        node_ip=ip,
        data_dir=Path(data_dir).resolve(),
        labels=_pairs(f.labels, "--labels"),
        taints=_taints(f.taints),
        capacity=_quantities(f.capacity, "--capacity"),
        reserved=_quantities(f.reserved, "--reserved"),
        dynamic_ports=_port_range(f.dynamic_port_range),
        artifact_cache_bytes=f.artifact_cache_mib << 20,
        artifact_timeout=f.artifact_timeout,
        artifact_ca_file=f.artifact_ca_file,
        artifact_file_urls=f.artifact_file_urls,
        listen=listen,
        proxy_from=networks,
        lease_interval=f.lease_interval,
        lease_duration=f.lease_duration,
        backoff_initial=f.backoff_initial,
        backoff_max=max(f.backoff_max, f.backoff_initial),
        log_max_bytes=f.log_max_bytes,
        volume_refresh=f.volume_refresh,
        log_keep=f.log_keep,
        drain_on_exit=f.drain_on_exit,
        service_proxy=f.service_proxy,
        proxy_balance=f.proxy_balance,
        cgroups=f.cgroups,
        tls=tls,
        run_as_user=f.run_as_user,
        run_as_group=f.run_as_group,
        refuse_root=f.refuse_root_workloads,
        metrics_listen="" if f.hollow else f.metrics_listen,
        usage_interval=f.usage_interval,
        limits_mode=f.limits_mode,
        shim=f.shim,
    )
    try:
        config.data_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise click.BadParameter(f"{data_dir!r}: {err.strerror}", param_hint="--data-dir") from None
    _warn_if_unreachable(config)
    try:
        hollow_run = (
            serve_hollow(config, f.count, f.name_prefix, shared_watch=f.hollow_watch == "shared") if f.hollow else None
        )
        asyncio.run(hollow_run if hollow_run is not None else serve(config))
    except ApiError as err:
        click.echo(f"navarch-agent: {err.message}", err=True)
        sys.exit(1)
    except (JoinError, OSError, ValueError) as err:
        click.echo(f"navarch-agent: {err}", err=True)
        sys.exit(1)
