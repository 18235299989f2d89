"""``navarch-scheduler``: flags, the gRPC service, and (optionally) leader election around the scheduling loop.

With ``--leader-elect`` every replica keeps its informers warm and serves Status/Explain; only the holder of
the ``navarch-system/navarch-scheduler`` Lease schedules. A replica that loses the Lease exits (as
kube-scheduler does), so it can never keep binding on a stale view; its supervisor restarts it as a standby.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from dataclasses import dataclass
from typing import Any

import click

from controlplane import addresses, transport
from controlplane.api.errors import ApiError
from controlplane.api.pb import scheduler_pb2, scheduler_pb2_grpc
from controlplane.client.client import ApiClient
from controlplane.client.component import ComponentFlags, Leader, LeadershipLost, identity, run_component
from controlplane.client.credentials import ComponentCredentials
from controlplane.client.options import click_options, flag, from_params
from controlplane.scheduler.config import ConfigError, load_config
from controlplane.scheduler.scheduler import Scheduler
from controlplane.scheduler.service import SchedulerService

log = logging.getLogger("navarch.scheduler")

LEASE_NAME = "navarch-scheduler"
SERVICE = scheduler_pb2.DESCRIPTOR.services_by_name["Scheduler"].full_name


async def serve(
    servers: list[str],
    listen: str,
    config_path: str | None,
    leader_elect: bool,
    lease_duration: float,
    credentials: ComponentCredentials,
    metrics_listen: str = "",
    **overrides: object,
) -> None:
    """Run until SIGINT/SIGTERM (or, with leader election, until leadership is lost)."""
    config = load_config(config_path, **overrides)
    who = identity()
    client = ApiClient(credentials.client_config(servers))
    scheduler = Scheduler(client, config, who)

    async def endpoint(leader: Leader) -> transport.ComponentServer:
        component = await transport.serve_component(
            listen,
            SERVICE,
            lambda server: scheduler_pb2_grpc.add_SchedulerServicer_to_server(
                SchedulerService(scheduler, leader), server
            ),
            credentials.server_tls,
        )
        log.info("scheduler %s serving on %s (port %d)", who, listen, component.port)
        return component

    await run_component(
        client,
        who=who,
        lease_name=LEASE_NAME,
        leader_elect=leader_elect,
        lease_duration=lease_duration,
        lead=scheduler.schedule_forever,
        serve=endpoint,
        always=(scheduler.run_informers,),
        metrics_listen=metrics_listen,
        server_tls=credentials.server_tls,
    )


@dataclass(frozen=True)
class SchedulerFlags(ComponentFlags):
    """``navarch-scheduler``'s flags."""

    listen: str = flag(
        default="127.0.0.1:10259", callback=addresses.listen_option_callback, help="Status and Explain endpoint."
    )
    config_path: str | None = flag("--config", type=click.Path(dir_okay=False), help="YAML configuration.")
    scheduler_name: str | None = flag(help="Schedule pods with this schedulerName (default-scheduler).")
    percentage_of_nodes_to_score: int | None = flag(type=click.IntRange(0, 100))
    event_qps: float | None = flag(
        type=click.FloatRange(min=0),
        help="Normal Events (Scheduled) per second at most, burst 100; more are dropped and counted (0: no limit)."
        "  [default: 50]",
    )


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click_options(SchedulerFlags)
def main(**params: Any) -> None:
    """Assign unscheduled pods to nodes."""
    f = from_params(SchedulerFlags, params)
    f.setup_logging()
    try:
        asyncio.run(
            serve(
                f.servers,
                f.listen,
                f.config_path,
                f.leader_elect,
                f.lease_duration,
                f.credentials(),
                f.metrics_listen,
                scheduler_name=f.scheduler_name,
                percentage_of_nodes_to_score=f.percentage_of_nodes_to_score,
                event_qps=f.event_qps,
            )
        )
    except ConfigError as err:
        click.echo(f"navarch-scheduler: {err}", err=True)
        sys.exit(2)
    except LeadershipLost:
        click.echo("navarch-scheduler: lost leadership; exiting so that a fresh standby takes its place", err=True)
        sys.exit(1)
    except ApiError as err:
        click.echo(f"navarch-scheduler: {err.message}", err=True)
        sys.exit(1)
    except (OSError, ValueError) as err:
        click.echo(f"navarch-scheduler: {err}", err=True)
        sys.exit(1)
