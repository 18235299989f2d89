"""``navarch-controller-manager``: flags, the gRPC service, and (optionally) leader election around the
controllers.

With ``--leader-elect`` every replica serves Status; only the holder of the
``navarch-system/navarch-controller-manager`` Lease runs controllers. A replica that loses the Lease exits
(as kube-controller-manager does) so it can never act on a stale view; its supervisor restarts it as a standby.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Callable
from typing import Any

import click

from controlplane import addresses, transport
from controlplane.api.durations import parse_duration
from controlplane.api.errors import ApiError
from controlplane.api.pb import controllermanager_pb2, controllermanager_pb2_grpc
from controlplane.client.client import ApiClient
from controlplane.client.component import Leader, LeadershipLost, identity, run_component
from controlplane.client.credentials import ComponentCredentials, component_credentials, tls_options
from controlplane.controllers.config import ControllerManagerConfig
from controlplane.controllers.manager import ControllerManager, UnknownControllerError, enabled_controllers
from controlplane.controllers.registry import CONTROLLERS
from controlplane.controllers.service import ControllerManagerService

log = logging.getLogger("navarch.controller-manager")

LEASE_NAME = "navarch-controller-manager"
SERVICE = controllermanager_pb2.DESCRIPTOR.services_by_name["ControllerManager"].full_name


async def serve(
    servers: list[str],
    listen: str,
    names: list[str],
    config: ControllerManagerConfig,
    leader_elect: bool,
    lease_duration: float,
    credentials: ComponentCredentials,
    metrics_listen: str = "",
) -> None:
    """Run until SIGINT/SIGTERM (or, with leader election, until leadership is lost)."""
    who = identity()
    client = ApiClient(credentials.client_config(servers))
    manager = ControllerManager(client, config, names, who)

    async def endpoint(leader: Leader) -> transport.ComponentServer:
        component = await transport.serve_component(
            listen,
            SERVICE,
            lambda server: controllermanager_pb2_grpc.add_ControllerManagerServicer_to_server(
                ControllerManagerService(manager, leader), server
            ),
            credentials.server_tls,
        )
        log.info(
            "controller manager %s serving on %s (port %d); controllers: %s",
            who,
            listen,
            component.port,
            ", ".join(names),
        )
        return component

    await run_component(
        client,
        who=who,
        lease_name=LEASE_NAME,
        leader_elect=leader_elect,
        lease_duration=lease_duration,
        lead=manager.run,
        serve=endpoint,
        metrics_listen=metrics_listen,
        server_tls=credentials.server_tls,
    )


def _duration(ctx: click.Context, param: click.Parameter, value: str) -> float:
    try:
        return parse_duration(value)
    except ValueError as err:
        raise click.BadParameter(str(err)) from None


def _concurrency_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    for name, cls in reversed(CONTROLLERS.items()):
        fn = click.option(
            f"--concurrent-{name}-syncs",
            f"concurrent_{name.replace('-', '_')}",
            type=click.IntRange(min=1),
            default=cls.default_workers,
            show_default=True,
            help=f"Workers of the {name} controller.",
        )(fn)
    return fn


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--horizontal-pod-autoscaler-sync-period",
    "hpa_sync_period",
    default="15s",
    show_default=True,
    callback=_duration,
    help="How often each HorizontalPodAutoscaler is evaluated.",
)
@click.option(
    "--horizontal-pod-autoscaler-downscale-stabilization",
    "hpa_downscale_stabilization",
    default="5m",
    show_default=True,
    callback=_duration,
    help="Scale-down stabilization window of HPAs that set none (the highest recommendation within it wins).",
)
@click.option(
    "--horizontal-pod-autoscaler-tolerance",
    "hpa_tolerance",
    type=click.FloatRange(min=0, max=1),
    default=0.1,
    show_default=True,
    help="How far (a fraction) a metric may be from its target before the HPA scales.",
)
@addresses.servers_option
@addresses.listen_option("127.0.0.1:10257", "Status endpoint.")
@click.option("--leader-elect", is_flag=True, help="Run as one of several replicas; only the leader runs controllers.")
@click.option("--lease-duration", type=click.FloatRange(min=1.0), default=15.0, show_default=True)
@click.option(
    "--controllers",
    default="*",
    show_default=True,
    help=f"Controllers to run: '*' for all, 'name' to add, '-name' to remove. Known: {', '.join(CONTROLLERS)}.",
)
@_concurrency_options
@click.option("--node-monitor-grace-period", default="40s", show_default=True, callback=_duration)
@click.option("--node-monitor-period", default="5s", show_default=True, callback=_duration)
@click.option("--node-startup-grace-period", default="60s", show_default=True, callback=_duration)
@click.option("--node-eviction-rate", type=float, default=0.1, show_default=True, help="Nodes/s tainted per zone.")
@click.option("--secondary-node-eviction-rate", type=float, default=0.01, show_default=True)
@click.option("--unhealthy-zone-threshold", type=click.FloatRange(0, 1), default=0.55, show_default=True)
@click.option("--large-cluster-size-threshold", type=click.IntRange(min=0), default=50, show_default=True)
@click.option("--job-backoff", default="10s", show_default=True, callback=_duration, help="First Job retry delay.")
@tls_options
@addresses.metrics_listen_option("")
@click.option("-v", "--verbose", is_flag=True)
def main(
    servers: list[str],
    listen: str,
    leader_elect: bool,
    lease_duration: float,
    controllers: str,
    node_monitor_grace_period: float,
    node_monitor_period: float,
    node_startup_grace_period: float,
    node_eviction_rate: float,
    secondary_node_eviction_rate: float,
    unhealthy_zone_threshold: float,
    large_cluster_size_threshold: int,
    job_backoff: float,
    certificate_authority: str | None,
    client_certificate: str | None,
    client_key: str | None,
    tls_server_name: str | None,
    token_file: str | None,
    metrics_listen: str,
    hpa_sync_period: float,
    hpa_downscale_stabilization: float,
    hpa_tolerance: float,
    verbose: bool,
    **concurrency: int,
) -> None:
    """Run Navarch's controllers (see --controllers for the list)."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        names = enabled_controllers(controllers)
    except UnknownControllerError as err:
        click.echo(f"navarch-controller-manager: {err}", err=True)
        sys.exit(2)
    config = ControllerManagerConfig(
        concurrent_syncs={name: concurrency[f"concurrent_{name.replace('-', '_')}"] for name in CONTROLLERS},
        node_monitor_grace_period=node_monitor_grace_period,
        node_monitor_period=node_monitor_period,
        node_startup_grace_period=node_startup_grace_period,
        node_eviction_rate=node_eviction_rate,
        secondary_node_eviction_rate=secondary_node_eviction_rate,
        unhealthy_zone_threshold=unhealthy_zone_threshold,
        large_cluster_size_threshold=large_cluster_size_threshold,
        job_backoff_base=job_backoff,
        hpa_sync_period=max(1.0, hpa_sync_period),
        hpa_downscale_stabilization=int(hpa_downscale_stabilization),
        hpa_tolerance=hpa_tolerance,
    )
    endpoints = servers
    credentials = component_credentials(
        certificate_authority, client_certificate, client_key, tls_server_name, token_file
    )
    try:
        asyncio.run(serve(endpoints, listen, names, config, leader_elect, lease_duration, credentials, metrics_listen))
    except LeadershipLost:
        click.echo("navarch-controller-manager: lost leadership; exiting so that a fresh standby takes over", err=True)
        sys.exit(1)
    except ApiError as err:
        click.echo(f"navarch-controller-manager: {err.message}", err=True)
        sys.exit(1)
    except (OSError, ValueError) as err:
        click.echo(f"navarch-controller-manager: {err}", err=True)
        sys.exit(1)
