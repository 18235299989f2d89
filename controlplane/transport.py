"""Every gRPC server and channel is made here, so TLS, keepalives, message limits and interceptors are set once.

Plain-text transport is for ``navarch up`` on loopback and for tests only;
TLS arrives with the security issue and plugs in here.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import grpc
import grpc.aio
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

MAX_MESSAGE_BYTES = 16 * 1024 * 1024
"""Largest gRPC message (a List of many objects can be large; one object is at most 1 MiB)."""

_COMMON_OPTIONS: list[tuple[str, int]] = [
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.keepalive_time_ms", 20_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.http2.max_pings_without_data", 0),
    ("grpc.keepalive_permit_without_calls", 1),
]

_SERVER_OPTIONS: list[tuple[str, int]] = [
    *_COMMON_OPTIONS,
    ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
    ("grpc.so_reuseport", 0),
]


def is_loopback(address: str) -> bool:
    """Whether ``host:port`` names a loopback address."""
    host = address.rpartition(":")[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def make_server(interceptors: Sequence[grpc.aio.ServerInterceptor] = ()) -> grpc.aio.Server:
    """A gRPC asyncio server with the project's options."""
    return grpc.aio.server(interceptors=list(interceptors), options=_SERVER_OPTIONS)


def add_port(server: grpc.aio.Server, address: str) -> int:
    """Listen on ``address``; returns the bound port (useful with port 0)."""
    port: int = server.add_insecure_port(address)
    if port == 0:
        raise OSError(f"cannot listen on {address}")
    return port


def make_channel(endpoints: Sequence[str]) -> grpc.aio.Channel:
    """A channel to one or several servers; several are balanced and fail over (round robin)."""
    if len(endpoints) == 1:
        target = endpoints[0]
        options: list[tuple[str, int | str]] = [*_COMMON_OPTIONS]
    else:
        target = "ipv4:" + ",".join(e.replace("localhost", "127.0.0.1") for e in endpoints)
        options = [*_COMMON_OPTIONS, ("grpc.lb_policy_name", "round_robin")]
    return grpc.aio.insecure_channel(target, options=options)


@dataclass
class ComponentServer:
    """A started gRPC server of a control-plane component (scheduler, controller manager): its service,
    health and reflection."""

    server: grpc.aio.Server
    health: health.aio.HealthServicer
    port: int

    async def stop(self, grace: float = 1.0) -> None:
        """Report NOT_SERVING, then stop (in-flight calls get ``grace`` seconds)."""
        await self.health.enter_graceful_shutdown()
        await self.server.stop(grace)


async def serve_component(
    listen: str, service_name: str, register: Callable[[grpc.aio.Server], None]
) -> ComponentServer:
    """Start a server on ``listen`` with the service ``register`` adds, plus health and reflection."""
    server = make_server()
    register(server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (service_name, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME), server
    )
    port = add_port(server, listen)
    await server.start()
    await health_servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    return ComponentServer(server, health_servicer, port)
