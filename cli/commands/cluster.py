"""Cluster-wide information: version, api-resources, cluster-info, and shell completion scripts."""

from __future__ import annotations

import asyncio
from importlib.metadata import version as dist_version

import click
import grpc
import grpc.aio
from grpc_health.v1 import health_pb2, health_pb2_grpc

from cli import rawhttp
from cli.config import Target
from cli.context import run
from controlplane import transport
from controlplane.api import kinds, namespaces
from controlplane.api.errors import NotFoundError
from controlplane.api.pb import coordination_pb2
from controlplane.client.client import ApiClient

COMPONENT_LEASES = ("navarch-scheduler", "navarch-controller-manager")


@click.command()
@click.option("--client", "client_only", is_flag=True, help="Only the client's version.")
def version(client_only: bool) -> None:
    """Print the client version (and whether the API servers answer)."""
    click.echo(f"Client Version: {dist_version('navarch')}")
    if client_only:
        return

    async def body(client: ApiClient, target: Target) -> None:
        await client.get_by_name("Namespace", "default")
        click.echo(f"Server: {', '.join(target.servers)} (reachable)")

    run(body)


@click.command(name="api-resources")
def api_resources() -> None:
    """List the kinds the API serves."""
    rows = [("NAME", "SHORTNAMES", "APIVERSION", "NAMESPACED", "KIND")]
    rows += [
        (k.plural, ",".join(k.short_names), k.api_version, str(k.namespaced).lower(), k.kind)
        for k in sorted(kinds.KINDS, key=lambda k: k.plural)
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    for r in rows:
        click.echo("   ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip())


async def _health(endpoint: str, service: str, tls: transport.ChannelTLS | None) -> str:
    channel = transport.make_channel([endpoint], tls)
    try:
        stub = health_pb2_grpc.HealthStub(channel)
        resp = await stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=3)
        return "healthy" if resp.status == health_pb2.HealthCheckResponse.SERVING else "unhealthy"
    except grpc.aio.AioRpcError as err:
        return f"unreachable ({err.code().name})"
    finally:
        await channel.close()


@click.command(name="cluster-info")
def cluster_info() -> None:
    """Show the API servers, etcd's health as they see it, and the scheduler's and controller manager's leaders."""

    async def body(client: ApiClient, target: Target) -> None:
        for endpoint in target.servers:
            api, etcd = await asyncio.gather(
                _health(endpoint, "", target.tls()), _health(endpoint, "etcd", target.tls())
            )
            click.echo(f"API server {endpoint}: {api}; etcd: {etcd if api == 'healthy' else 'unknown'}")
        for name in COMPONENT_LEASES:
            try:
                lease = await client.get(coordination_pb2.Lease, name, namespaces.SYSTEM)
                holder = lease.spec.holder_identity or "none"
                click.echo(f"{name} leader: {holder} (renewed {lease.spec.renew_time.ToJsonString()})")
            except NotFoundError:
                click.echo(f"{name} leader: none (not running)")
        if not target.metrics:
            click.echo("Metrics: this context names no metrics endpoints (each component's --metrics-listen)")
        for component, url in sorted(target.metrics.items()):
            try:
                status, _ = await asyncio.to_thread(rawhttp.get, f"{url}/readyz", target, timeout=3)
                ready = "ready" if status == 200 else f"not ready ({status})"
            except rawhttp.RawError:
                ready = "unreachable"
            click.echo(f"Metrics of {component}: {url}/metrics ({ready})")

    run(body)


@click.command()
@click.argument("shell", type=click.Choice(["bash", "zsh", "fish"]))
def completion(shell: str) -> None:
    """Print the shell completion script: e.g. source <(navarch completion bash)."""
    from click.shell_completion import get_completion_class

    from cli.main import main

    cls = get_completion_class(shell)
    assert cls is not None
    comp = cls(main, {}, "navarch", "_NAVARCH_COMPLETE")
    click.echo(comp.source())
