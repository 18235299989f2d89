"""The etcd connection: endpoints with failover, TLS, retries, and error mapping to our vocabulary.

One gRPC channel balances KV calls over every member (round robin); a second
one carries watch streams. A call that finds no member answering is retried
with jittered back-off until its deadline, so losing one member of three (or
a leader election) costs latency, not errors.
"""

from __future__ import annotations

import asyncio
import ipaddress
import random
import socket
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import grpc
import grpc.aio
from etcd3aio import EtcdConnectionError, EtcdTransientError
from etcd3aio.connections import ConnectionManager
from etcd3aio.kv import KVService
from etcd3aio.lease import LeaseService
from etcd3aio.maintenance import MaintenanceService

from controlplane.api.errors import GoneError, UnavailableError
from controlplane.storage import metrics

T = TypeVar("T")

# gRPC's default reconnect back-off grows to 120 s; a restarted member should be used again within seconds.
_CHANNEL_OPTIONS: list[tuple[str, int]] = [
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 2_000),
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
]


@dataclass(frozen=True)
class EtcdConfig:
    """How to reach etcd."""

    endpoints: Sequence[str] = field(default_factory=lambda: ["127.0.0.1:2379"])
    """``host:port`` of each member; calls are balanced and fail over between them."""
    ca_file: str | None = None
    """CA bundle that signs the members' certificates; enables TLS."""
    cert_file: str | None = None
    """Client certificate for mutual TLS."""
    key_file: str | None = None
    """Key of the client certificate."""
    tls_server_name: str | None = None
    """Name to verify in the members' certificates when several endpoints share one (default: localhost)."""
    request_timeout: float = 10.0
    """Deadline of one etcd request, retries included."""
    attempt_timeout: float = 2.0
    """Deadline of one attempt; a member that does not answer in time is given up for another."""

    def tls_args(self) -> dict[str, bytes | None]:
        """TLS material for the etcd client, read from the files."""
        if not self.ca_file:
            return {}
        return {
            "ca_cert": Path(self.ca_file).read_bytes(),
            "cert_chain": Path(self.cert_file).read_bytes() if self.cert_file else None,
            "cert_key": Path(self.key_file).read_bytes() if self.key_file else None,
        }


class EtcdClient:
    """An open connection to an etcd cluster: KV and maintenance services and a channel for watches."""

    def __init__(self, config: EtcdConfig) -> None:
        if not config.endpoints:
            raise ValueError("at least one etcd endpoint is required")
        self.config = config
        self._server_name = config.tls_server_name or ("localhost" if config.ca_file else None)
        self._channels: list[grpc.aio.Channel] = []
        self._kv: KVService | None = None
        self._maintenance: MaintenanceService | None = None
        self._lease: LeaseService | None = None
        self._watch_channel: grpc.aio.Channel | None = None
        self.unhealthy: str | None = None
        """Why the last health check failed (None: healthy). While set, calls give up after one attempt, so
        that clients hear "etcd is unavailable" in seconds rather than time out (e.g. without a quorum)."""

    def _channel(self, endpoints: list[str]) -> grpc.aio.Channel:
        manager = ConnectionManager(endpoints)
        manager.grpc_options.extend(_CHANNEL_OPTIONS)
        channel = manager.get_channel(tls_server_name=self._server_name, **self.config.tls_args())
        self._channels.append(channel)
        return channel

    async def _resolved_endpoints(self) -> list[str]:
        """The members as IPv4 ``address:port``: the client balances over an ``ipv4:`` target, so host names
        (``etcd-1.example:2379``) are resolved once, here; with TLS the first name is then checked in the
        members' certificates unless ``tls_server_name`` says otherwise."""
        out: list[str] = []
        loop = asyncio.get_running_loop()
        for endpoint in self.config.endpoints:
            host, _, port = endpoint.rpartition(":")
            if host in ("localhost", ""):
                out.append(f"127.0.0.1:{port}")
                continue
            try:
                ipaddress.IPv4Address(host)
                out.append(endpoint)
                continue
            except ValueError:
                pass
            try:
                found = await loop.getaddrinfo(host, int(port), family=socket.AF_INET, type=socket.SOCK_STREAM)
            except (OSError, ValueError) as err:
                raise UnavailableError(f"cannot resolve the etcd member {endpoint!r}: {err}") from None
            out.append(f"{found[0][4][0]}:{port}")
            if self.config.tls_server_name is None and self.config.ca_file and self._server_name == "localhost":
                self._server_name = host
        return out

    async def connect(self) -> None:
        """Resolve the members and create the channels (gRPC connects lazily)."""
        endpoints = await self._resolved_endpoints()
        kv_channel = self._channel(endpoints)
        # One attempt per service call: retries are ours (below), bounded by the request deadline.
        self._kv = KVService(kv_channel, max_attempts=1)
        self._maintenance = MaintenanceService(kv_channel, max_attempts=1)
        self._lease = LeaseService(kv_channel, max_attempts=1)
        self._watch_channel = self._channel(endpoints)

    @property
    def kv(self) -> KVService:
        """The KV service."""
        if self._kv is None:
            raise RuntimeError("EtcdClient.connect() was not called")
        return self._kv

    @property
    def maintenance(self) -> MaintenanceService:
        """The maintenance service (status, defragment, ...)."""
        if self._maintenance is None:
            raise RuntimeError("EtcdClient.connect() was not called")
        return self._maintenance

    @property
    def lease(self) -> LeaseService:
        """The lease service (TTLs for keys that expire on their own, such as Events)."""
        if self._lease is None:
            raise RuntimeError("EtcdClient.connect() was not called")
        return self._lease

    @property
    def watch_channel(self) -> grpc.aio.Channel:
        """A channel reserved for watch streams, so they never queue behind KV calls."""
        if self._watch_channel is None:
            raise RuntimeError("EtcdClient.connect() was not called")
        return self._watch_channel

    async def close(self) -> None:
        """Close every channel."""
        for channel in self._channels:
            await channel.close()
        self._channels.clear()
        self._kv = self._maintenance = self._lease = self._watch_channel = None

    async def ping(self, timeout: float = 5.0) -> int:
        """Check that the cluster answers a quorum read; returns the current revision."""
        return await self.current_revision(timeout=timeout)

    async def current_revision(self, timeout: float | None = None) -> int:
        """The cluster's current revision (a linearizable read)."""
        resp = await self.call(
            lambda t: self.kv.get("/registry/", count_only=True, timeout=t), "read the revision", timeout=timeout
        )
        return int(resp.header.revision)

    async def call(self, op: Callable[[float], Awaitable[T]], what: str, *, timeout: float | None = None) -> T:
        """Run ``op(attempt_timeout)`` until it succeeds, retrying unavailable members with jittered back-off.

        Raises ``UnavailableError`` when the deadline passes, ``GoneError`` for a compacted revision.
        """
        operation, type_ = metrics.labels(what)
        started = time.monotonic()
        try:
            return await self._call(op, what, timeout)
        except Exception:
            metrics.REQUEST_ERRORS.labels(operation, type_).inc()
            raise
        finally:
            metrics.REQUEST_DURATION.labels(operation, type_).observe(time.monotonic() - started)

    async def _call(self, op: Callable[[float], Awaitable[T]], what: str, timeout: float | None) -> T:
        deadline = time.monotonic() + (timeout or self.config.request_timeout)
        if self.unhealthy is not None:
            deadline = min(deadline, time.monotonic() + self.config.attempt_timeout)
        delay = 0.05
        while True:
            left = deadline - time.monotonic()
            attempt = max(0.05, min(self.config.attempt_timeout, left))
            try:
                # asyncio.timeout, not wait_for: wait_for (3.11) can swallow a cancellation that arrives as
                # the call completes, leaving its caller's loop running after shutdown.
                async with asyncio.timeout(attempt + 0.5):
                    return await op(attempt)
            except grpc.aio.AioRpcError as err:
                if err.code() == grpc.StatusCode.OUT_OF_RANGE:
                    raise GoneError(f"the requested revision has been compacted: {err.details()}") from err
                if err.code() not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                    raise
                last = f"{err.code().name}: {err.details()}"
            except (EtcdConnectionError, EtcdTransientError, TimeoutError) as err:
                last = str(err) or type(err).__name__
            if time.monotonic() + delay >= deadline:
                if self.unhealthy is not None:
                    raise UnavailableError(
                        f"etcd is unavailable ({what}): {last}; its health check has been failing, so the cluster "
                        "may have lost its quorum (a majority of members must be up) — no reads or writes until it "
                        "is back"
                    )
                raise UnavailableError(f"etcd is unavailable ({what}): {last}")
            await asyncio.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, 1.0)
