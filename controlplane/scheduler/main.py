"""``navarch-scheduler``: flags, the gRPC service, and (optionally) leader election around the scheduling loop.

With ``--leader-elect`` every replica keeps its informers warm and serves Status/Explain; only the holder of
the ``navarch-system/navarch-scheduler`` Lease schedules. A replica that loses the Lease exits (as
kube-scheduler does), so it can never keep binding on a stale view; its supervisor restarts it as a standby.
"""

from __future__ import annotations

import asyncio
import logging
import sys

import click

from controlplane import addresses, transport
from controlplane.api.errors import ApiError
from controlplane.api.pb import scheduler_pb2, scheduler_pb2_grpc
from controlplane.client.client import ApiClient
from controlplane.client.component import Leader, LeadershipLost, identity, run_component
from controlplane.client.credentials import ComponentCredentials, component_credentials, tls_options
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


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@addresses.servers_option
@addresses.listen_option("127.0.0.1:10259", "Status and Explain endpoint.")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), default=None, help="YAML configuration.")
@click.option("--scheduler-name", default=None, help="Schedule pods with this schedulerName (default-scheduler).")
@click.option("--leader-elect", is_flag=True, help="Run as one of several replicas; only the leader schedules.")
@click.option("--lease-duration", type=click.FloatRange(min=1.0), default=15.0, show_default=True)
@click.option("--percentage-of-nodes-to-score", type=click.IntRange(0, 100), default=None)
@click.option(
    "--event-qps",
    type=click.FloatRange(min=0),
    default=None,
    help="Normal Events (Scheduled) per second at most, burst 100; more are dropped and counted (0: no limit)."
    "  [default: 50]",
)
@tls_options
@addresses.metrics_listen_option("")
@click.option("-v", "--verbose", is_flag=True)
def main(
    servers: list[str],
    listen: str,
    config_path: str | None,
    scheduler_name: str | None,
    leader_elect: bool,
    lease_duration: float,
    percentage_of_nodes_to_score: int | None,
    event_qps: float | None,
    certificate_authority: str | None,
    client_certificate: str | None,
    client_key: str | None,
    tls_server_name: str | None,
    token_file: str | None,
    metrics_listen: str,
    verbose: bool,
) -> None:
    """Assign unscheduled pods to nodes."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    endpoints = servers
    credentials = component_credentials(
        certificate_authority, client_certificate, client_key, tls_server_name, token_file
    )
    try:
        asyncio.run(
            serve(
                endpoints,
                listen,
                config_path,
                leader_elect,
                lease_duration,
                credentials,
                metrics_listen,
                scheduler_name=scheduler_name,
                percentage_of_nodes_to_score=percentage_of_nodes_to_score,
                event_qps=event_qps,
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
