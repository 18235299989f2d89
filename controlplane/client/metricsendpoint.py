"""Every component's HTTP endpoint: ``/metrics`` for Prometheus, ``/healthz``, ``/livez`` and ``/readyz`` for
probes and load balancers.

Guarantees:

- Secure (``EndpointSecurity`` given): HTTPS with the component's own certificate. ``/metrics`` needs an
  authenticated caller (a client certificate signed by the cluster CA, or a bearer token where the component
  can check one) that the cluster's RBAC allows to ``get`` the path (Kubernetes' ``nonResourceURLs``; the
  bootstrap ClusterRole ``system:monitoring`` grants it). 401 without credentials, 403 when refused.
  Decisions are cached per caller and path for ``ALLOW_TTL``/``DENY_TTL`` seconds, so a scrape costs no
  API call. The probe paths answer anyone, as Kubernetes' ``system:public-info-viewer`` does.
- Insecure (no security): plain HTTP, only on a loopback address (refused otherwise), no authentication.
- Bounded: a request head over ``MAX_HEAD_BYTES`` gets 431, one not sent within ``HEAD_TIMEOUT`` seconds is
  dropped, at most ``MAX_CONNECTIONS`` are served at once (more are closed unanswered). One request per
  connection (``Connection: close``). Only GET and HEAD.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from prometheus_client import REGISTRY, CollectorRegistry, disable_created_metrics
from prometheus_client.exposition import choose_encoder

from controlplane import addresses, certinfo, transport
from controlplane.api.pb import auth_pb2

log = logging.getLogger(__name__)

disable_created_metrics()  # type: ignore[no-untyped-call]  # no ``*_created`` series: Kubernetes' components do not expose them either

MAX_HEAD_BYTES = 16 * 1024
HEAD_TIMEOUT = 10.0
MAX_CONNECTIONS = 64
ALLOW_TTL = 60.0
DENY_TTL = 10.0
PROBE_PATHS = ("/healthz", "/livez", "/readyz")


@dataclass(frozen=True)
class Caller:
    """Who scrapes: a certificate's CN and O, or a token's user."""

    user: str
    groups: tuple[str, ...] = ()


Authorize = Callable[[Caller, str], Awaitable[bool]]
"""Whether ``caller`` may GET ``path``."""


@dataclass(frozen=True)
class EndpointSecurity:
    """HTTPS and who may read ``/metrics``."""

    cert_file: str
    key_file: str
    client_ca_file: str | None
    """Client certificates are verified against it (optional for the caller: a token also works)."""
    authorize: Authorize
    authenticate_token: Callable[[str], Caller | None] | None = None
    """Where the component can check bearer tokens itself (the API server); None: certificates only."""

    def ssl_context(self) -> ssl.SSLContext:
        """The server side of TLS; a client certificate is asked for but not required."""
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(self.cert_file, self.key_file)
        if self.client_ca_file:
            ctx.load_verify_locations(self.client_ca_file)
            ctx.verify_mode = ssl.CERT_OPTIONAL
        return ctx


def delegated_authorizer(call_auth: Callable[..., Awaitable[auth_pb2.AccessReviewResponse]]) -> Authorize:
    """Authorization asked of the API server (an access review for the caller), as kube-scheduler and the
    kubelet delegate theirs. ``call_auth`` is ``ApiClient.call_auth``."""

    async def authorize(caller: Caller, path: str) -> bool:
        request = auth_pb2.AccessReviewRequest(
            verb="get", non_resource_url=path, user=caller.user, groups=list(caller.groups)
        )
        try:
            response = await call_auth(
                lambda stub, t: stub.AccessReview(request, timeout=t), f"access review of {path}", timeout=5.0
            )
        except Exception as err:  # the API server unreachable: refuse, and say why in the log
            log.warning("cannot review access of %s to %s: %s", caller.user, path, err)
            return False
        return bool(response.allowed)

    return authorize


class _DecisionCache:
    """Recent authorization decisions, bounded in size."""

    def __init__(self, authorize: Authorize, clock: Callable[[], float] = time.monotonic) -> None:
        self.authorize = authorize
        self.clock = clock
        self._decisions: dict[tuple[Caller, str], tuple[bool, float]] = {}

    async def allowed(self, caller: Caller, path: str) -> bool:
        key = (caller, path)
        now = self.clock()
        known = self._decisions.get(key)
        if known is not None and now < known[1]:
            return known[0]
        allowed = await self.authorize(caller, path)
        if len(self._decisions) >= 1024:
            self._decisions.clear()
        self._decisions[key] = (allowed, now + (ALLOW_TTL if allowed else DENY_TTL))
        return allowed


def _response(status: str, body: bytes, content_type: str = "text/plain; charset=utf-8") -> bytes:
    head = (
        f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {len(body)}\r\n"
        "Connection: close\r\nCache-Control: no-store\r\n\r\n"
    )
    return head.encode() + body


class MetricsEndpoint:
    """The HTTP(S) endpoint of one component; ``start`` binds, ``stop`` closes every connection."""

    def __init__(
        self,
        listen: str,
        *,
        security: EndpointSecurity | None,
        registry: CollectorRegistry = REGISTRY,
        ready: Callable[[], tuple[bool, str]] = lambda: (True, "ok"),
    ) -> None:
        self.listen = addresses.host_port(listen, listen=True)
        if security is None and not transport.is_loopback(self.listen):
            raise ValueError(f"--metrics-listen {listen}: plain HTTP only on loopback; configure TLS")
        self.security = security
        self.registry = registry
        self.ready = ready
        self._decisions = _DecisionCache(security.authorize) if security else None
        self._server: asyncio.Server | None = None
        self._slots = asyncio.Semaphore(MAX_CONNECTIONS)
        self._connections: set[asyncio.Task[None]] = set()
        self.port = 0
        self._ctx: ssl.SSLContext | None = None

    def reload_tls(self, cert_file: str | None = None, key_file: str | None = None) -> None:
        """Load the certificate (renewed; from new files if given): new connections get the new one."""
        if self.security is not None and self._ctx is not None:
            self._ctx.load_cert_chain(cert_file or self.security.cert_file, key_file or self.security.key_file)

    @property
    def scheme(self) -> str:
        """``https`` or ``http``."""
        return "https" if self.security else "http"

    async def start(self) -> None:
        """Bind and serve (OSError if the address is taken)."""
        host, _, port = self.listen.rpartition(":")
        ctx = self._ctx = self.security.ssl_context() if self.security else None
        self._server = await asyncio.start_server(
            self._accept,
            host.strip("[]") or None,
            int(port),
            ssl=ctx,
            limit=MAX_HEAD_BYTES,
            **({"ssl_handshake_timeout": HEAD_TIMEOUT} if ctx is not None else {}),
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """Stop listening and end open connections."""
        if self._server is not None:
            self._server.close()
        for task in list(self._connections):
            task.cancel()
        await asyncio.gather(*self._connections, return_exceptions=True)
        if self._server is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._server.wait_closed(), 2.0)
        self._server = None

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        if self._slots.locked():
            writer.close()
            return
        self._connections.add(task)
        try:
            async with self._slots:
                await self._serve(reader, writer)
        except (OSError, asyncio.IncompleteReadError, ssl.SSLError, TimeoutError):
            pass
        finally:
            self._connections.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer.wait_closed(), 1.0)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), HEAD_TIMEOUT)
        except asyncio.LimitOverrunError:
            writer.write(_response("431 Request Header Fields Too Large", b"request head too large\n"))
            return
        if len(head) > MAX_HEAD_BYTES:
            writer.write(_response("431 Request Header Fields Too Large", b"request head too large\n"))
            return
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            writer.write(_response("400 Bad Request", b"malformed request line\n"))
            return
        method, target = parts[0], parts[1]
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if sep:
                headers[name.strip().lower()] = value.strip()
        if method not in ("GET", "HEAD"):
            writer.write(_response("405 Method Not Allowed", b"only GET\n"))
            return
        path = target.split("?", 1)[0]
        answer = await self._answer(path, headers, writer)
        if method == "HEAD":
            answer = answer.split(b"\r\n\r\n", 1)[0] + b"\r\n\r\n"
        writer.write(answer)
        await writer.drain()

    async def _answer(self, path: str, headers: dict[str, str], writer: asyncio.StreamWriter) -> bytes:
        if path in ("/healthz", "/livez"):
            return _response("200 OK", b"ok\n")
        if path == "/readyz":
            ok, detail = self.ready()
            return _response("200 OK" if ok else "503 Service Unavailable", f"{detail}\n".encode())
        if path != "/metrics":
            return _response("404 Not Found", b"not found: /metrics, /healthz, /livez, /readyz\n")
        if self.security is not None and self._decisions is not None:
            caller = self._caller(headers, writer)
            if caller is None:
                return _response("401 Unauthorized", b"present a client certificate or a bearer token\n")
            if not await self._decisions.allowed(caller, path):
                return _response("403 Forbidden", f'user "{caller.user}" cannot get path "{path}"\n'.encode())
        encoder, content_type = choose_encoder(headers.get("accept", ""))
        return _response("200 OK", encoder(self.registry), content_type)

    def _caller(self, headers: dict[str, str], writer: asyncio.StreamWriter) -> Caller | None:
        assert self.security is not None
        ssl_object = writer.get_extra_info("ssl_object")
        der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
        if der:  # verified against the client CA during the handshake
            try:
                identity = certinfo.read_der(der)
            except certinfo.CertificateError:
                return None
            return Caller(identity.user, identity.groups) if identity.user else None
        scheme, _, token = headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer" and token.strip() and self.security.authenticate_token is not None:
            return self.security.authenticate_token(token.strip())
        return None
