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
from dataclasses import dataclass
from typing import Any

import click

from controlplane import addresses, transport
from controlplane.api.errors import ApiError
from controlplane.api.pb import controllermanager_pb2, controllermanager_pb2_grpc
from controlplane.client.client import ApiClient
from controlplane.client.component import (
    ComponentFlags,
    Leader,
    LeadershipLost,
    duration_option_callback,
    identity,
    run_component,
)
from controlplane.client.credentials import ComponentCredentials
from controlplane.client.options import click_options, flag, from_params
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


@dataclass(frozen=True)
class ControllerManagerFlags(ComponentFlags):
    """``navarch-controller-manager``'s flags (and one ``--concurrent-<name>-syncs`` per controller)."""

    listen: str = flag(default="127.0.0.1:10257", callback=addresses.listen_option_callback, help="Status endpoint.")
    controllers: str = flag(
        default="*",
        help=f"Controllers to run: '*' for all, 'name' to add, '-name' to remove. Known: {', '.join(CONTROLLERS)}.",
    )
    node_monitor_grace_period: float = flag(default="40s", callback=duration_option_callback)
    node_monitor_period: float = flag(default="5s", callback=duration_option_callback)
    node_startup_grace_period: float = flag(default="60s", callback=duration_option_callback)
    node_eviction_rate: float = flag(default=0.1, type=float, help="Nodes/s tainted per zone.")
    secondary_node_eviction_rate: float = flag(default=0.01, type=float)
    unhealthy_zone_threshold: float = flag(default=0.55, type=click.FloatRange(0, 1))
    large_cluster_size_threshold: int = flag(default=50, type=click.IntRange(min=0))
    job_backoff: float = flag(default="10s", callback=duration_option_callback, help="First Job retry delay.")
    hpa_sync_period: float = flag(
        "--horizontal-pod-autoscaler-sync-period",
        default="15s",
        callback=duration_option_callback,
        help="How often each HorizontalPodAutoscaler is evaluated.",
    )
    hpa_downscale_stabilization: float = flag(
        "--horizontal-pod-autoscaler-downscale-stabilization",
        default="5m",
        callback=duration_option_callback,
        help="Scale-down stabilization window of HPAs that set none (the highest recommendation within it wins).",
    )
    hpa_tolerance: float = flag(
        "--horizontal-pod-autoscaler-tolerance",
        default=0.1,
        type=click.FloatRange(min=0, max=1),
        help="How far (a fraction) a metric may be from its target before the HPA scales.",
    )


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click_options(ControllerManagerFlags)
@_concurrency_options
def main(**params: Any) -> None:
    """Run Navarch's controllers (see --controllers for the list)."""
    f = from_params(ControllerManagerFlags, params)
    concurrency = {k: v for k, v in params.items() if k.startswith("concurrent_")}
    f.setup_logging()
    try:
        names = enabled_controllers(f.controllers)
    except UnknownControllerError as err:
        click.echo(f"navarch-controller-manager: {err}", err=True)
        sys.exit(2)
    config = ControllerManagerConfig(
        concurrent_syncs={name: concurrency[f"concurrent_{name.replace('-', '_')}"] for name in CONTROLLERS},
        node_monitor_grace_period=f.node_monitor_grace_period,
        node_monitor_period=f.node_monitor_period,
        node_startup_grace_period=f.node_startup_grace_period,
        node_eviction_rate=f.node_eviction_rate,
        secondary_node_eviction_rate=f.secondary_node_eviction_rate,
        unhealthy_zone_threshold=f.unhealthy_zone_threshold,
        large_cluster_size_threshold=f.large_cluster_size_threshold,
        job_backoff_base=f.job_backoff,
        hpa_sync_period=max(1.0, f.hpa_sync_period),
        hpa_downscale_stabilization=int(f.hpa_downscale_stabilization),
        hpa_tolerance=f.hpa_tolerance,
    )
    endpoints = f.servers
    credentials = f.credentials()
    try:
        asyncio.run(
            serve(endpoints, f.listen, names, config, f.leader_elect, f.lease_duration, credentials, f.metrics_listen)
        )
    except LeadershipLost:
        click.echo("navarch-controller-manager: lost leadership; exiting so that a fresh standby takes over", err=True)
        sys.exit(1)
    except ApiError as err:
        click.echo(f"navarch-controller-manager: {err.message}", err=True)
        sys.exit(1)
    except (OSError, ValueError) as err:
        click.echo(f"navarch-controller-manager: {err}", err=True)
        sys.exit(1)
