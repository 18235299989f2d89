"""The etcd connection: endpoints with failover, TLS, and error mapping to our vocabulary."""

from __future__ import annotations

from collections.abc import Awaitable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import grpc
import grpc.aio
from etcd3aio import Etcd3Client, EtcdError
from etcd3aio.connections import ConnectionManager
from etcd3aio.kv import KVService

from controlplane.api.errors import GoneError, UnavailableError

T = TypeVar("T")


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
    """An open connection to an etcd cluster: the KV client and a channel for watches."""

    def __init__(self, config: EtcdConfig) -> None:
        self.config = config
        server_name = config.tls_server_name or ("localhost" if config.ca_file else None)
        self.kv_client = Etcd3Client(list(config.endpoints), tls_server_name=server_name, **config.tls_args())
        self._manager = ConnectionManager(list(config.endpoints))
        self._watch_channel: grpc.aio.Channel | None = None
        self._server_name = server_name

    async def connect(self) -> None:
        """Open the channels (lazily connected by gRPC)."""
        await self.kv_client.connect()
        self._watch_channel = self._manager.get_channel(tls_server_name=self._server_name, **self.config.tls_args())

    @property
    def watch_channel(self) -> grpc.aio.Channel:
        """A channel reserved for watch streams, so they never queue behind KV calls."""
        if self._watch_channel is None:
            raise RuntimeError("EtcdClient.connect() was not called")
        return self._watch_channel

    async def close(self) -> None:
        """Close every channel."""
        await self.kv_client.close()
        if self._watch_channel is not None:
            await self._watch_channel.close()
            self._watch_channel = None

    async def ping(self, timeout: float = 5.0) -> int:
        """Check that the cluster answers a quorum read; returns the current revision."""
        return await self.current_revision(timeout=timeout)

    async def current_revision(self, timeout: float | None = None) -> int:
        """The cluster's current revision (a linearizable read)."""
        kv = self.kv
        resp = await call(kv.get("/registry/", count_only=True, timeout=timeout or self.config.request_timeout))
        return int(resp.header.revision)

    @property
    def kv(self) -> KVService:
        """The KV service (raises if not connected)."""
        if self.kv_client.kv is None:
            raise RuntimeError("EtcdClient.connect() was not called")
        return self.kv_client.kv


async def call(op: Awaitable[T]) -> T:
    """Await an etcd operation, mapping client errors to ``UnavailableError`` / ``GoneError``."""
    try:
        return await op
    except EtcdError as err:
        raise UnavailableError(f"etcd is unavailable: {err}") from err
    except TimeoutError as err:
        raise UnavailableError("etcd did not answer in time") from err
    except grpc.aio.AioRpcError as err:
        if err.code() == grpc.StatusCode.OUT_OF_RANGE:
            raise GoneError(f"the requested revision has been compacted: {err.details()}") from err
        if err.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.CANCELLED):
            raise UnavailableError(f"etcd is unavailable: {err.details()}") from err
        raise
