"""The API server's request guard, one gRPC interceptor around every call:

authenticate → per-user rate limit → authorize → run the handler under a deadline → audit.

Health checks pass unauthenticated (load balancers probe them); reflection and the Auth service need an
authenticated caller, and the Auth service authorizes inside its handlers. The caller is available to
handlers as ``current_user``.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, NoReturn

import grpc
import grpc.aio
from google.protobuf.json_format import MessageToDict
from google.protobuf.message import Message

from controlplane import pki
from controlplane.api.errors import ApiError, DeadlineError, InvalidError, TooManyRequestsError
from controlplane.api.ratelimit import TokenBucket
from controlplane.apiserver import metrics, requestinfo
from controlplane.apiserver.audit import AuditEvent, AuditLog
from controlplane.apiserver.authn import Authenticator, UserInfo
from controlplane.apiserver.authz import Attributes, AuthorizerChain
from controlplane.apiserver.inflight import InflightStreams, StreamLimits

log = logging.getLogger(__name__)

current_user: contextvars.ContextVar[UserInfo] = contextvars.ContextVar("current_user")

FIRST_FRAME_TIMEOUT = 10.0
"""Seconds an authenticated stream may take to send its first frame (what it asks for)."""
"""The authenticated caller of the request being handled."""

_STREAMING = ("Watch", "PodLogs", "PodExec", "PodPortForward")


@dataclass(frozen=True)
class Limits:
    """Per-user request rate, and the longest a unary call may run."""

    rate: float = 200.0
    """Requests per second per user (0: unlimited); members of system:masters are exempt."""
    burst: int = 400
    request_timeout: float = 60.0
    """Seconds a unary call may run, whatever deadline the client set (or did not set)."""
    streams: StreamLimits = field(default_factory=StreamLimits)
    """Concurrent watches, log streams and exec sessions per user and per server."""


class UserRateLimiter:
    """A token bucket per user: a request that finds the bucket empty is refused, not queued."""

    def __init__(self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate, self.burst, self._clock = rate, burst, clock
        self._buckets: dict[str, TokenBucket] = {}

    def allow(self, user: str) -> bool:
        """Take a token for ``user`` if one is left."""
        if self.rate <= 0:
            return True
        now = self._clock()
        if len(self._buckets) > 10_000:  # forget idle users rather than grow without bound
            self._buckets = {u: b for u, b in self._buckets.items() if now - b.at < 60}
        bucket = self._buckets.setdefault(user, TokenBucket(self.rate, float(self.burst)))
        return bucket.take(now) == 0.0


def peer_ip(context: grpc.aio.ServicerContext) -> str:
    peer = str(context.peer() or "")
    kind, _, rest = peer.partition(":")
    return rest.rpartition(":")[0].strip("[]") if kind in ("ipv4", "ipv6") else peer


def _body(msg: Any) -> Any:
    if isinstance(msg, Message):
        return MessageToDict(msg, preserving_proto_field_name=False)
    return None


class RequestGuard(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Authentication, rate limits, authorization, deadlines and audit for every call of the API server."""

    def __init__(
        self,
        authenticator: Authenticator,
        authorizer: AuthorizerChain,
        *,
        limits: Limits | None = None,
        audit: AuditLog | None = None,
    ) -> None:
        self.authenticator = authenticator
        self.authorizer = authorizer
        self.limits = limits or Limits()
        self.limiter = UserRateLimiter(self.limits.rate, self.limits.burst)
        self.inflight = InflightStreams(self.limits.streams)
        self.audit = audit

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        method: str = handler_call_details.method
        if handler is None or method.startswith(requestinfo.HEALTH):
            return handler
        if handler.unary_unary is not None:
            return grpc.unary_unary_rpc_method_handler(
                self._unary(method, handler.unary_unary),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.unary_stream is not None:
            return grpc.unary_stream_rpc_method_handler(
                self._unary_stream(method, handler.unary_stream),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.stream_stream is not None:
            return grpc.stream_stream_rpc_method_handler(
                self._stream_stream(method, handler.stream_stream),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        return handler

    # ------------------------------------------------------------ checks

    def _authenticate(self, context: grpc.aio.ServicerContext, event: AuditEvent) -> UserInfo:
        """Who calls (UNAUTHENTICATED otherwise), within its rate limit."""
        user = self.authenticator.authenticate(context)
        event.user, event.groups, event.authenticated_by = user.name, user.groups, user.method
        current_user.set(user)
        if not user.in_group(pki.MASTERS_GROUP) and not self.limiter.allow(user.name):
            raise TooManyRequestsError(
                f'too many requests from user "{user.name}" (limit {self.limits.rate:g}/s, burst {self.limits.burst});'
                " slow down and retry"
            )
        return user

    async def _admit(
        self,
        method: str,
        request: Any,
        context: grpc.aio.ServicerContext,
        event: AuditEvent,
        user: UserInfo | None = None,
    ) -> None:
        """Authenticate (unless ``user`` already is), rate-limit and authorize, filling the audit event as facts
        become known."""
        if user is None:
            user = self._authenticate(context, event)
        if not method.startswith(requestinfo.API):
            # Reflection and Auth: authenticated is enough here (Auth's handlers authorize what they do).
            event.verb, event.resource = requestinfo.AUTH_AUDIT.get(method, ("", ""))
            return
        attrs = requestinfo.api_attributes(method, request, user)
        self._describe(event, attrs)
        await self.authorizer.check(attrs)

    @staticmethod
    def _describe(event: AuditEvent, attrs: Attributes) -> None:
        event.verb, event.resource, event.subresource = attrs.verb, attrs.resource, attrs.subresource
        event.namespace, event.name = attrs.namespace, attrs.name

    def _event(self, method: str, context: grpc.aio.ServicerContext) -> AuditEvent:
        return AuditEvent(user="", groups=(), method=method, source_ip=peer_ip(context))

    def _finish(
        self, event: AuditEvent, started: float, context: grpc.aio.ServicerContext, failure: BaseException | None
    ) -> None:
        if event.code == "OK" and failure is not None:  # not refused by us: the handler's own status
            if isinstance(failure, asyncio.CancelledError):
                event.code = "CANCELLED"
            else:
                code = context.code()
                event.code = code.name if isinstance(code, grpc.StatusCode) else "UNKNOWN"
                event.reason = str(context.details() or "")
        elapsed = time.monotonic() - started
        verb = event.verb or event.method.rpartition("/")[2]
        metrics.record(verb, event.resource, event.subresource, event.code, elapsed)
        if self.audit is None:
            return
        event.latency_ms = elapsed * 1000
        self.audit.record(event)

    async def _refuse(self, context: grpc.aio.ServicerContext, event: AuditEvent, err: ApiError) -> NoReturn:
        event.code, event.reason = err.code.name, err.message
        await context.abort(err.code, err.message)
        raise AssertionError("unreachable: abort raises")

    async def _admit_or_refuse(
        self,
        method: str,
        request: Any,
        context: grpc.aio.ServicerContext,
        event: AuditEvent,
        user: UserInfo | None = None,
    ) -> None:
        try:
            await self._admit(method, request, context, event, user)
        except ApiError as refused:
            await self._refuse(context, event, refused)
        if self.audit is not None and self.audit.wants_request:
            event.request = _body(request)

    # ---------------------------------------------------------- wrappers

    def _unary(self, method: str, behavior: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        async def guarded(request: Any, context: grpc.aio.ServicerContext) -> Any:
            started, event = time.monotonic(), self._event(method, context)
            failure: BaseException | None = None
            try:
                await self._admit_or_refuse(method, request, context, event)
                try:
                    async with asyncio.timeout(self.limits.request_timeout):
                        response = await behavior(request, context)
                except TimeoutError:
                    late = DeadlineError(f"{method} did not finish within {self.limits.request_timeout:g}s")
                    await self._refuse(context, event, late)
                if self.audit is not None and self.audit.wants_response:
                    event.response = _body(response)
                return response
            except BaseException as err:
                failure = err
                raise
            finally:
                self._finish(event, started, context, failure)

        return guarded

    def _unary_stream(
        self, method: str, behavior: Callable[..., AsyncIterator[Any]]
    ) -> Callable[..., AsyncIterator[Any]]:
        async def guarded(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            started, event = time.monotonic(), self._event(method, context)
            failure: BaseException | None = None
            try:
                await self._admit_or_refuse(method, request, context, event)
                async with self._stream_slot(method, context, event):
                    async for item in behavior(request, context):
                        yield item
            except BaseException as err:
                failure = err
                raise
            finally:
                self._finish(event, started, context, failure)

        return guarded

    @contextlib.asynccontextmanager
    async def _stream_slot(
        self, method: str, context: grpc.aio.ServicerContext, event: AuditEvent
    ) -> AsyncIterator[None]:
        """Hold one of the bounded long-running slots for the caller while the stream runs."""
        user = current_user.get()
        name = method.rpartition("/")[2]
        try:
            held = self.inflight.acquire(name, user.name, exempt_from_user_bound=user.in_group(pki.MASTERS_GROUP))
        except ApiError as refused:
            await self._refuse(context, event, refused)
        try:
            yield
        finally:
            if held:
                self.inflight.release(name, user.name)

    def _stream_stream(
        self, method: str, behavior: Callable[..., AsyncIterator[Any]]
    ) -> Callable[..., AsyncIterator[Any]]:
        async def guarded(requests: AsyncIterator[Any], context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            started, event = time.monotonic(), self._event(method, context)
            failure: BaseException | None = None
            try:
                first = None
                # Who calls is known before anything is read from the stream: an unauthenticated caller gets
                # nothing read, buffered or parsed.
                try:
                    user = self._authenticate(context, event)
                except ApiError as refused:
                    await self._refuse(context, event, refused)
                if method.startswith(requestinfo.API):
                    # The first frame says what is asked (PodExec's start): read it to authorize, then replay it.
                    try:
                        async with asyncio.timeout(FIRST_FRAME_TIMEOUT):
                            first = await anext(aiter(requests), None)
                    except TimeoutError:
                        first = None
                    if first is None:
                        empty = InvalidError("the stream ended before its first frame (start)", field="start")
                        await self._refuse(context, event, empty)
                await self._admit_or_refuse(method, first, context, event, user)

                async def replay() -> AsyncIterator[Any]:
                    if first is not None:
                        yield first
                    async for frame in requests:
                        yield frame

                async with self._stream_slot(method, context, event):
                    async for item in behavior(replay(), context):
                        yield item
            except BaseException as err:
                failure = err
                raise
            finally:
                self._finish(event, started, context, failure)

        return guarded
