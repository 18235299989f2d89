"""What the scheduler and the controller manager share when they run: one identity, optional leader
election on their Lease, the gRPC status endpoint, signals, and an orderly end.

``run_component`` guarantees:

- the ``always`` coroutines (informers) run for the process's whole life, leader or not;
- ``lead`` runs only while this replica holds ``navarch-system/<lease_name>`` (or at once without
  ``--leader-elect``); Kubernetes' timing: renew deadline 2/3 and retry period 1/7.5 of the lease duration;
- SIGINT/SIGTERM end it cleanly; a replica that stops leading raises :class:`LeadershipLost`, so that its
  supervisor restarts it as a fresh standby rather than it acting on a stale view;
- with ``metrics_listen`` it serves /metrics, /healthz, /livez and /readyz (``MetricsEndpoint``): HTTPS with
  the component's certificate and authorization delegated to the API server (an access review per caller,
  cached) when it has TLS, plain HTTP on loopback otherwise;
- an exception in any task ends the others and propagates; the endpoints and the client are always closed.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any

import click

from controlplane import addresses, transport
from controlplane.api import namespaces
from controlplane.api.durations import parse_duration
from controlplane.client.client import ApiClient
from controlplane.client.credentials import ComponentCredentials, component_credentials
from controlplane.client.leaderelection import LeaderElectionConfig, LeaderElector
from controlplane.client.metricsendpoint import EndpointSecurity, MetricsEndpoint, delegated_authorizer
from controlplane.client.options import flag

SYSTEM_NAMESPACE = namespaces.SYSTEM
"""Where the control plane's own Leases are."""

Leader = Callable[[], tuple[str, bool]]
"""Who leads now, and whether it is this replica."""


class LeadershipLost(Exception):
    """This replica stopped leading."""


def identity() -> str:
    """This process's unique candidate name: host name and process id."""
    return f"{socket.gethostname()}_{os.getpid()}"


def election(lease_name: str, who: str, lease_duration: float) -> LeaderElectionConfig:
    """The election on ``navarch-system/<lease_name>`` with Kubernetes' proportions."""
    return LeaderElectionConfig(
        lease_namespace=SYSTEM_NAMESPACE,
        lease_name=lease_name,
        identity=who,
        lease_duration=lease_duration,
        renew_deadline=lease_duration * 2 / 3,
        retry_period=lease_duration / 7.5,
    )


async def until_signal(*work: Coroutine[Any, Any, Any]) -> bool:
    """Run ``work`` until SIGINT/SIGTERM (True) or until one of them ends (False; its exception is raised).
    Whatever is still running is cancelled and awaited before this returns; the signal handlers are
    removed again."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    tasks = [asyncio.create_task(w, name=f"work-{i}") for i, w in enumerate(work)]
    stopper = asyncio.create_task(stop.wait(), name="stop-signal")
    try:
        done, _ = await asyncio.wait([*tasks, stopper], return_when=asyncio.FIRST_COMPLETED)
        if stopper in done:
            return True
        for task in done:
            err = task.exception()
            if err is not None:
                raise err
        return False
    finally:
        for task in [*tasks, stopper]:
            task.cancel()
        await asyncio.gather(*tasks, stopper, return_exceptions=True)
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


async def run_component(
    client: ApiClient,
    *,
    who: str,
    lease_name: str,
    leader_elect: bool,
    lease_duration: float,
    lead: Callable[[], Coroutine[Any, Any, None]],
    serve: Callable[[Leader], Awaitable[Any]],
    always: tuple[Callable[[], Coroutine[Any, Any, None]], ...] = (),
    metrics_listen: str = "",
    server_tls: transport.ServerTLS | None = None,
) -> None:
    """Run until a signal (or until leadership is lost: :class:`LeadershipLost`). ``serve`` starts the
    component's endpoint given the leader function and returns something with ``stop()``."""
    elector = (
        LeaderElector(client, election(lease_name, who, lease_duration), on_started_leading=lead)
        if leader_elect
        else None
    )

    def leader() -> tuple[str, bool]:
        if elector is None:
            return who, True
        return elector.leader, elector.is_leader()

    metrics = metrics_endpoint(client, metrics_listen, server_tls) if metrics_listen else None
    endpoint = await serve(leader)
    if metrics is not None:
        try:
            await metrics.start()
        except BaseException:
            await endpoint.stop()
            await client.close()
            raise
    try:
        work = [fn() for fn in always]
        work.append(lead() if elector is None else elector.run())
        if not await until_signal(*work):
            raise LeadershipLost()
    finally:
        await endpoint.stop()
        if metrics is not None:
            await metrics.stop()
        await client.close()


def metrics_endpoint(client: ApiClient, listen: str, server_tls: transport.ServerTLS | None) -> MetricsEndpoint:
    """A component's metrics endpoint: secured with its own certificate and delegated authorization when it
    has one, plain HTTP on loopback otherwise (ValueError for a non-loopback address then)."""
    security = None
    if server_tls is not None:
        security = EndpointSecurity(
            server_tls.cert_file, server_tls.key_file, server_tls.client_ca_file, delegated_authorizer(client.call_auth)
        )
    return MetricsEndpoint(listen, security=security)


_FILE = click.Path(exists=True, dir_okay=False)


def duration_option_callback(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    """A click callback: a Kubernetes duration (``40s``, ``5m``) as seconds."""
    if value is None or isinstance(value, float):
        return value
    try:
        return parse_duration(str(value))
    except ValueError as err:
        raise click.BadParameter(str(err)) from None


def setup_logging(verbose: bool) -> None:
    """Every component's log format (to stderr); debug with ``-v``."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )


def servers_flag() -> Any:
    """``--server``: the API servers, comma separated (parsed into a list of ``host:port``)."""
    return flag(
        "--server",
        default="127.0.0.1:6443",
        callback=addresses.servers_option_callback,
        help="API servers, comma separated (calls fail over between them).",
    )


def metrics_listen_flag() -> Any:
    """``--metrics-listen``: the component's /metrics and probe endpoint ("" for none)."""
    return flag(
        default="",
        callback=addresses.metrics_listen_option_callback,
        help="Address of /metrics, /healthz, /livez, /readyz (HTTPS in secure clusters; '' for none).",
    )


def verbose_flag(help: str = "") -> Any:
    """``-v/--verbose``: log at debug level."""
    return flag("-v", "--verbose", default=False, is_flag=True, help=help)


@dataclass(frozen=True)
class ComponentFlags:
    """The flags every leader-elected component has (the scheduler and the controller manager subclass it
    and override ``listen``'s default)."""

    servers: list[str] = servers_flag()
    listen: str = flag(default="127.0.0.1:0", callback=addresses.listen_option_callback, help="Status endpoint.")
    leader_elect: bool = flag(
        default=False, is_flag=True, help="Run as one of several replicas; only the leader does the work."
    )
    lease_duration: float = flag(default=15.0, type=click.FloatRange(min=1.0))
    certificate_authority: str | None = flag(
        type=_FILE, help="Cluster CA: talk TLS to the API servers (plain text without it)."
    )
    client_certificate: str | None = flag(type=_FILE)
    client_key: str | None = flag(type=_FILE)
    tls_server_name: str | None = flag(help="Name to check in the API servers' certificate.")
    token_file: str | None = flag(type=_FILE, help="Bearer token file.")
    metrics_listen: str = metrics_listen_flag()
    verbose: bool = verbose_flag()

    def credentials(self) -> ComponentCredentials:
        """TLS towards the API servers and for the component's own endpoints."""
        return component_credentials(
            self.certificate_authority, self.client_certificate, self.client_key, self.tls_server_name, self.token_file
        )

    def setup_logging(self) -> None:
        """One log format for every component; debug with ``-v``."""
        setup_logging(self.verbose)
