"""Every gRPC server and channel is made here, so TLS, keepalives, message limits and interceptors are set once.

Plain-text transport is for ``navarch up`` on loopback and for tests only: ``add_port`` refuses plain text on
any other address. With TLS, servers either require a client certificate signed by their client CA (mutual
TLS) or, on the API server's token port, accept any TLS client and leave authentication to bearer tokens
(Python's gRPC cannot ask for a certificate without requiring one).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import grpc
import grpc.aio
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

MAX_MESSAGE_BYTES = 16 * 1024 * 1024
"""Largest gRPC message a client accepts (a List of many objects can be large)."""
MAX_REQUEST_BYTES = 4 * 1024 * 1024
"""Largest message a server accepts: one object is at most 1.5 MiB, so anything bigger is refused unread."""

_COMMON_OPTIONS: list[tuple[str, int]] = [
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    # gRPC's reconnect back-off grows to 120 s; a healed partition should be used again within seconds.
    ("grpc.initial_reconnect_backoff_ms", 200),
    ("grpc.max_reconnect_backoff_ms", 5_000),
    ("grpc.keepalive_time_ms", 20_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.http2.max_pings_without_data", 0),
    ("grpc.keepalive_permit_without_calls", 1),
]

_SERVER_OPTIONS: list[tuple[str, int]] = [
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_receive_message_length", MAX_REQUEST_BYTES),
    *_COMMON_OPTIONS[4:],
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


def _read(path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as err:
        raise OSError(f"cannot read {path}: {err.strerror or err}") from None


@dataclass(frozen=True)
class ServerTLS:
    """A server's certificate, and the CA its clients' certificates must be signed by."""

    cert_file: str
    """Serving certificate (PEM; may carry the CA after it, which joining agents use)."""
    key_file: str
    """Its private key."""
    client_ca_file: str | None = None
    """When set, every client must present a certificate signed by this CA (mutual TLS)."""

    def credentials(self, *, require_client_cert: bool = True) -> grpc.ServerCredentials:
        """Server credentials; a client certificate is required when there is a client CA and
        ``require_client_cert``."""
        require = bool(self.client_ca_file) and require_client_cert
        return grpc.ssl_server_credentials(
            [(_read(self.key_file), _read(self.cert_file))],
            root_certificates=_read(self.client_ca_file) if self.client_ca_file and require else None,
            require_client_auth=require,
        )


@dataclass(frozen=True)
class ChannelTLS:
    """How a client verifies servers and proves who it is."""

    ca_file: str | None = None
    """CA that signed the servers' certificates (None: the CA given as ``ca_pem``)."""
    cert_file: str | None = None
    """Client certificate (mutual TLS)."""
    key_file: str | None = None
    """Its key."""
    server_name: str | None = None
    """Name to check in the servers' certificates (default: the endpoint's host)."""
    ca_pem: bytes | None = None
    """The CA itself, when it is not in a file (a joining agent's pinned CA)."""
    cert_pem: bytes | None = None
    """The client certificate itself, when it is not in a file."""
    key_pem: bytes | None = None
    """Its key, when not in a file."""

    def credentials(self) -> grpc.ChannelCredentials:
        """Channel credentials from the files (read now, so a renewed certificate is used by the next channel)."""
        ca = self.ca_pem if self.ca_pem is not None else (_read(self.ca_file) if self.ca_file else None)
        if ca is None:
            raise ValueError("TLS to a Navarch server needs the cluster CA (ca_file)")
        cert = self.cert_pem if self.cert_pem is not None else (_read(self.cert_file) if self.cert_file else None)
        key = self.key_pem if self.key_pem is not None else (_read(self.key_file) if self.key_file else None)
        if bool(cert) != bool(key):
            raise ValueError("a client certificate needs its key, and a key its certificate")
        return grpc.ssl_channel_credentials(root_certificates=ca, private_key=key, certificate_chain=cert)


def make_server(interceptors: Sequence[grpc.aio.ServerInterceptor] = ()) -> grpc.aio.Server:
    """A gRPC asyncio server with the project's options."""
    return grpc.aio.server(interceptors=list(interceptors), options=_SERVER_OPTIONS)


def add_port(server: grpc.aio.Server, address: str, credentials: grpc.ServerCredentials | None = None) -> int:
    """Listen on ``address`` (TLS with ``credentials``, else plain text on loopback only); returns the bound
    port (useful with port 0)."""
    if credentials is None and not is_loopback(address):
        raise OSError(f"refusing to serve plain text on non-loopback address {address}: configure TLS")
    try:
        if credentials is None:
            port: int = server.add_insecure_port(address)
        else:
            port = server.add_secure_port(address, credentials)
    except RuntimeError:  # gRPC's "Failed to bind to address": in use, or not an address of this host
        port = 0
    if port == 0:
        raise OSError(f"cannot listen on {address}: the port is in use or the address is not on this host")
    return port


def make_channel(
    endpoints: Sequence[str], tls: ChannelTLS | None = None, call_credentials: grpc.CallCredentials | None = None
) -> grpc.aio.Channel:
    """A channel to one or several servers; several are balanced and fail over (round robin).

    With ``tls`` the channel verifies the servers against its CA (and presents a client certificate when it
    has one); ``call_credentials`` (a bearer token) need TLS.
    """
    if len(endpoints) == 1:
        target = endpoints[0]
        options: list[tuple[str, int | str]] = [*_COMMON_OPTIONS]
    else:
        target = "ipv4:" + ",".join(e.replace("localhost", "127.0.0.1") for e in endpoints)
        options = [*_COMMON_OPTIONS, ("grpc.lb_policy_name", "round_robin")]
    if tls is None:
        if call_credentials is not None:
            raise ValueError("bearer tokens are sent over TLS only")
        return grpc.aio.insecure_channel(target, options=options)
    # Several endpoints share one name to check: the first one's host unless told (the certificate names all).
    name = tls.server_name or endpoints[0].rpartition(":")[0].strip("[]")
    options.append(("grpc.ssl_target_name_override", name))
    credentials = tls.credentials()
    if call_credentials is not None:
        credentials = grpc.composite_channel_credentials(credentials, call_credentials)
    return grpc.aio.secure_channel(target, credentials, options=options)


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
    listen: str, service_name: str, register: Callable[[grpc.aio.Server], None], tls: ServerTLS | None = None
) -> ComponentServer:
    """Start a server on ``listen`` with the service ``register`` adds, plus health and reflection (mutual TLS
    when ``tls`` names a client CA)."""
    server = make_server()
    register(server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (service_name, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME), server
    )
    port = add_port(server, listen, tls.credentials() if tls else None)
    await server.start()
    await health_servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    return ComponentServer(server, health_servicer, port)
