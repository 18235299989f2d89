"""The typed async client of the Navarch API, with endpoint failover and retries.

::

    ApiClient(endpoints) -- one channel, round robin over every API server (a dead one is skipped)
      .create/get/list/update/update_status/patch/delete/watch(...)   typed on the kind's message class
      retries: UNAVAILABLE (and DEADLINE_EXCEEDED of one attempt) with jittered exponential back-off,
               only for calls that are safe to repeat: reads, Delete, and writes guarded by a
               resourceVersion. Create, unconditional Update and unguarded Patch are sent once (again only when
               the channel refused them before any server saw them).
      errors:  ApiError subclasses (controlplane.api.errors), never raw gRPC errors.
"""

from __future__ import annotations

import asyncio
import builtins
import dataclasses
import json
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar, cast, overload

import grpc
import grpc.aio
from google.protobuf.message import Message

from controlplane import transport
from controlplane.api import kinds
from controlplane.api.errors import ApiError, GoneError, UnauthenticatedError, UnavailableError, from_status
from controlplane.api.objects import meta, unwrap, wrap
from controlplane.api.pb import api_pb2, api_pb2_grpc, auth_pb2_grpc, core_pb2, metrics_pb2, podaccess_pb2

T = TypeVar("T", bound=Message)
R = TypeVar("R")


@dataclass(frozen=True)
class ClientConfig:
    """How the client reaches the API servers."""

    endpoints: Sequence[str] = field(default_factory=lambda: ["127.0.0.1:6443"])
    """``host:port`` of every API server; calls are balanced and fail over between them."""
    timeout: float = 30.0
    """Deadline of one call, retries included."""
    attempt_timeout: float = 10.0
    """Deadline of one attempt of a retried call."""
    initial_backoff: float = 0.05
    """First retry delay; doubles (with jitter) up to ``max_backoff``."""
    max_backoff: float = 2.0
    """Longest retry delay."""
    max_attempts: int = 0
    """Attempts of a retried call before giving up (0: until the deadline). Interactive tools use a few."""
    tls: transport.ChannelTLS | None = None
    """CA (and client certificate) for TLS; None: plain text (``navarch up`` on loopback)."""
    token: str = ""
    """Bearer token sent with every call (TLS only)."""
    warning_handler: Callable[[str], None] | None = None
    """Called with each warning the API server returns on Create, Update and Patch (``warning`` trailing
    metadata, Kubernetes' Warning headers; client-go's WarningHandler). None: warnings are dropped."""


LIST_CHUNK = 500
"""Objects per page when ``list`` fetches everything (kubectl's and client-go's pager default)."""


@dataclass
class ObjectList(Generic[T]):
    """One List answer."""

    items: list[T]
    resource_version: str
    continue_token: str = ""
    remaining: int = 0


@dataclass
class WatchEvent(Generic[T]):
    """One watch event: ADDED, MODIFIED, DELETED or BOOKMARK."""

    type: str
    object: T
    resource_version: str


def _refused_certificate(details: str) -> bool:
    """Whether a connection failure is the server refusing our (missing or foreign) client certificate."""
    upper = details.upper()
    return "CERTIFICATE_REQUIRED" in upper or "TLSV1_ALERT_UNKNOWN_CA" in upper or "CERTIFICATE_UNKNOWN" in upper


# gRPC's load balancers fail a call with these words when no connection was ready to carry it: the request
# never left this process, so sending it again cannot apply it twice.
_NOT_SENT_MARKERS = ("failed to connect to all addresses", "connections to all backends failing")


def _never_sent(err: grpc.aio.AioRpcError) -> bool:
    """Whether a failed call was refused by the client's own channel before any server saw it."""
    details = (err.details() or "").lower()
    return err.code() == grpc.StatusCode.UNAVAILABLE and any(m in details for m in _NOT_SENT_MARKERS)


def _kind_name(kind: type[Any] | str) -> str:
    if isinstance(kind, str):
        return kind
    return kinds.of_message(kind()).kind


class ApiClient:
    """Create, get, list, update, patch, delete and watch objects of every kind."""

    def __init__(self, config: ClientConfig | None = None, *, endpoints: Sequence[str] | None = None) -> None:
        if config is None:
            config = ClientConfig(endpoints=list(endpoints or ["127.0.0.1:6443"]))
        if not config.endpoints:
            raise ValueError("at least one API server endpoint is required")
        self.config = config
        self._channel = self._new_channel()
        self._stub = api_pb2_grpc.ApiStub(self._channel)
        self._retired: list[grpc.aio.Channel] = []

    def _new_channel(self) -> grpc.aio.Channel:
        token = grpc.access_token_call_credentials(self.config.token) if self.config.token else None
        return transport.make_channel(list(self.config.endpoints), self.config.tls, token)

    @property
    def channel(self) -> grpc.aio.Channel:
        """The channel to the API servers (for other services of the API server, such as Auth)."""
        return self._channel

    async def reconnect(self, tls: transport.ChannelTLS | None) -> None:
        """Use new TLS credentials (a renewed certificate) for every call from now on; calls in flight finish on
        the old channel, which closes with the client."""
        self.config = dataclasses.replace(self.config, tls=tls)
        self._retired.append(self._channel)
        self._channel = self._new_channel()
        self._stub = api_pb2_grpc.ApiStub(self._channel)

    @property
    def endpoints(self) -> list[str]:
        """The API servers this client talks to."""
        return list(self.config.endpoints)

    async def close(self) -> None:
        """Close the channel (streams end)."""
        for channel in [*self._retired, self._channel]:
            await channel.close()
        self._retired.clear()

    async def __aenter__(self) -> ApiClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # ------------------------------------------------------------ plumbing

    async def _warned(self, call: Any) -> Any:
        """Await a unary call and hand its ``warning`` trailing metadata to the warning handler."""
        out = await call
        handler = self.config.warning_handler
        if handler is not None:
            for key, value in await call.trailing_metadata() or ():
                if key == "warning":
                    handler(value if isinstance(value, str) else value.decode(errors="replace"))
        return out

    async def _call(
        self, rpc: Callable[[float], Awaitable[R]], what: str, *, retry: bool, timeout: float | None = None
    ) -> R:
        deadline = time.monotonic() + (timeout or self.config.timeout)
        delay = self.config.initial_backoff
        attempts = 0
        etcd_down: grpc.aio.AioRpcError | None = None
        while True:
            attempts += 1
            left = deadline - time.monotonic()
            attempt = max(0.05, min(left, self.config.attempt_timeout)) if retry else max(0.05, left)
            try:
                return await rpc(attempt)
            except grpc.aio.AioRpcError as err:
                code = err.code()
                if code == grpc.StatusCode.UNAVAILABLE and "etcd" in (err.details() or ""):
                    etcd_down = err  # the server's own diagnosis beats a later "no answer in time"
                elif etcd_down is not None and code == grpc.StatusCode.DEADLINE_EXCEEDED:
                    err = etcd_down
                # RESOURCE_EXHAUSTED is the server's per-user rate limit: back off and try again.
                retryable = (
                    code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED)
                    or (code == grpc.StatusCode.DEADLINE_EXCEEDED and time.monotonic() < deadline)
                ) and not _refused_certificate(err.details() or "")
                out_of_attempts = bool(self.config.max_attempts) and attempts >= self.config.max_attempts
                # A call that is not retried (a Create) is still sent again when it never reached a server:
                # with several API servers, one may be back while the channel's connection to it is still
                # waiting out its reconnect back-off.
                again = retry or _never_sent(err)
                if not again or not retryable or out_of_attempts or time.monotonic() + delay >= deadline:
                    raise self._error(err, what) from None
            await asyncio.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, self.config.max_backoff)

    def _error(self, err: grpc.aio.AioRpcError, what: str) -> ApiError:
        details = err.details() or err.code().name
        if err.code() == grpc.StatusCode.UNAVAILABLE and _refused_certificate(details):
            return UnauthenticatedError(
                f"the API server at {', '.join(self.endpoints)} refused the TLS handshake ({what}): it requires a "
                f"client certificate signed by the cluster CA, and this client has none or another: {details}"
            )
        if err.code() == grpc.StatusCode.UNAVAILABLE and "etcd" not in details:
            hint = ""
            tls = self.config.tls
            if tls is not None and not (tls.cert_file or tls.cert_pem) and not self.config.token:
                # With TLS 1.3 a refused client certificate shows up as a closed socket: say what is likely.
                hint = " (this client presents no certificate: the API server's mutual-TLS port refuses such clients)"
            return UnavailableError(
                f"cannot reach the API server at {', '.join(self.endpoints)} ({what}): {details}{hint}"
            )
        if err.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
            return from_status(err.code(), f"{what}: no answer from {', '.join(self.endpoints)} in time")
        return from_status(err.code(), details)

    async def call_auth(
        self, rpc: Callable[[auth_pb2_grpc.AuthStub, float], Awaitable[R]], what: str, *, timeout: float | None = None
    ) -> R:
        """Call the Auth service (access reviews, who-am-i, node certificates) with the client's retries."""
        stub = auth_pb2_grpc.AuthStub(self._channel)
        return await self._call(lambda t: rpc(stub, t), what, retry=True, timeout=timeout)

    # --------------------------------------------------------------- verbs

    async def create(self, obj: T, *, dry_run: bool = False, timeout: float | None = None) -> T:
        """Create an object (sent once: a retry could create it twice)."""
        req = api_pb2.CreateRequest(object=wrap(obj), dry_run="All" if dry_run else "")
        out = await self._call(
            lambda t: self._warned(self._stub.Create(req, timeout=t)),
            f"create {_describe(obj)}",
            retry=False,
            timeout=timeout,
        )
        return cast(T, unwrap(out))

    async def get(self, kind: type[T], name: str, namespace: str = "", *, timeout: float | None = None) -> T:
        """Read one object."""
        req = api_pb2.GetRequest(kind=_kind_name(kind), namespace=namespace, name=name)
        out = await self._call(
            lambda t: self._stub.Get(req, timeout=t), f"get {req.kind} {name}", retry=True, timeout=timeout
        )
        return cast(T, unwrap(out))

    async def get_by_name(self, kind: str, name: str, namespace: str = "", *, timeout: float | None = None) -> Message:
        """Read one object by kind name (``"deploy"``), for generic tools such as the CLI."""
        req = api_pb2.GetRequest(kind=kind, namespace=namespace, name=name)
        out = await self._call(
            lambda t: self._stub.Get(req, timeout=t), f"get {kind} {name}", retry=True, timeout=timeout
        )
        return unwrap(out)

    @overload
    async def list(
        self,
        kind: type[T],
        namespace: str = "",
        *,
        label_selector: str = "",
        field_selector: str = "",
        limit: int = 0,
        continue_token: str = "",
        resource_version: str = "",
        timeout: float | None = None,
    ) -> ObjectList[T]: ...

    @overload
    async def list(
        self,
        kind: str,
        namespace: str = "",
        *,
        label_selector: str = "",
        field_selector: str = "",
        limit: int = 0,
        continue_token: str = "",
        resource_version: str = "",
        timeout: float | None = None,
    ) -> ObjectList[Message]: ...

    async def list(
        self,
        kind: type[Any] | str,
        namespace: str = "",
        *,
        label_selector: str = "",
        field_selector: str = "",
        limit: int = 0,
        continue_token: str = "",
        resource_version: str = "",
        timeout: float | None = None,
    ) -> ObjectList[Any]:
        """List objects (all namespaces when ``namespace`` is empty).

        With ``limit`` one page is returned (follow ``continue_token``). Without one, every page of
        ``LIST_CHUNK`` objects is fetched and joined: the server reads all pages at the first one's revision,
        so the result is one consistent snapshot at ``resource_version``, however large the kind (an
        unpaged List over the message size is refused by the server). A continue token that expires
        mid-way (its revision compacted) restarts the listing."""
        if limit or continue_token:
            return await self._list_page(
                kind, namespace, label_selector, field_selector, limit, continue_token, resource_version, timeout
            )
        for _attempt in range(3):
            first = await self._list_page(
                kind, namespace, label_selector, field_selector, LIST_CHUNK, "", resource_version, timeout
            )
            items, token = list(first.items), first.continue_token
            try:
                while token:
                    page = await self._list_page(
                        kind, namespace, label_selector, field_selector, LIST_CHUNK, token, "", timeout
                    )
                    items.extend(page.items)
                    token = page.continue_token
            except GoneError:
                continue  # compacted while we paged: start again
            return ObjectList(items, first.resource_version)
        raise GoneError(f"list {_kind_name(kind)}: the listing expired three times while paging; try again")

    async def _list_page(
        self,
        kind: type[Any] | str,
        namespace: str,
        label_selector: str,
        field_selector: str,
        limit: int,
        continue_token: str,
        resource_version: str,
        timeout: float | None,
    ) -> ObjectList[Any]:
        req = api_pb2.ListRequest(
            kind=_kind_name(kind),
            namespace=namespace,
            label_selector=label_selector,
            field_selector=field_selector,
            limit=limit,
            resource_version=resource_version,
        )
        setattr(req, "continue", continue_token)
        out = await self._call(
            lambda t: self._stub.List(req, timeout=t), f"list {req.kind}", retry=True, timeout=timeout
        )
        return ObjectList(
            [unwrap(i) for i in out.items],
            out.resource_version,
            getattr(out, "continue"),
            out.remaining_item_count,
        )

    async def update(self, obj: T, *, dry_run: bool = False, timeout: float | None = None) -> T:
        """Replace an object; retried only when guarded by its resourceVersion."""
        req = api_pb2.UpdateRequest(object=wrap(obj), dry_run="All" if dry_run else "")
        out = await self._call(
            lambda t: self._warned(self._stub.Update(req, timeout=t)),
            f"update {_describe(obj)}",
            retry=bool(meta(obj).resource_version),
            timeout=timeout,
        )
        return cast(T, unwrap(out))

    async def bind_pods(
        self, bindings: Sequence[api_pb2.PodBinding], *, timeout: float | None = None
    ) -> builtins.list[api_pb2.BindingResult]:
        """Assign pods to nodes in one request (at most 100); one result per binding, in order. Retried: a
        binding the pod already has answers OK again."""
        req = api_pb2.BindPodsRequest(bindings=bindings)
        out = await self._call(
            lambda t: self._stub.BindPods(req, timeout=t), f"bind {len(bindings)} pods", retry=True, timeout=timeout
        )
        return builtins.list(out.results)

    async def node_metrics(
        self, name: str = "", *, label_selector: str = "", timeout: float | None = None
    ) -> metrics_pb2.NodeMetricsList:
        """metrics.k8s.io NodeMetrics: of one node, or of every node the selector picks."""
        req = metrics_pb2.NodeMetricsRequest(name=name, label_selector=label_selector)
        out: metrics_pb2.NodeMetricsList = await self._call(
            lambda t: self._stub.ListNodeMetrics(req, timeout=t), "list node metrics", retry=True, timeout=timeout
        )
        return out

    async def pod_metrics(
        self, namespace: str = "", name: str = "", *, label_selector: str = "", timeout: float | None = None
    ) -> metrics_pb2.PodMetricsList:
        """metrics.k8s.io PodMetrics: of one pod, or of every pod (in ``namespace``; "" for all) selected."""
        req = metrics_pb2.PodMetricsRequest(namespace=namespace, name=name, label_selector=label_selector)
        out: metrics_pb2.PodMetricsList = await self._call(
            lambda t: self._stub.ListPodMetrics(req, timeout=t), "list pod metrics", retry=True, timeout=timeout
        )
        return out

    async def evict(
        self,
        name: str,
        namespace: str = "",
        *,
        grace_period_seconds: int | None = None,
        uid: str = "",
        dry_run: bool = False,
        timeout: float | None = None,
    ) -> core_pb2.Pod:
        """Evict a pod (``pods/eviction``): deleted unless a PodDisruptionBudget refuses, which raises
        ``TooManyRequestsError`` at once (not retried here: the caller decides when to ask again)."""
        req = api_pb2.EvictPodRequest(namespace=namespace, name=name, uid=uid, dry_run="All" if dry_run else "")
        if grace_period_seconds is not None:
            req.grace_period_seconds = grace_period_seconds
        out = await self._call(
            lambda t: self._stub.EvictPod(req, timeout=t), f"evict pod {namespace}/{name}", retry=False, timeout=timeout
        )
        return cast(core_pb2.Pod, unwrap(out.object))

    async def update_status(self, obj: T, *, timeout: float | None = None) -> T:
        """Replace an object's status; retried only when guarded by its resourceVersion."""
        req = api_pb2.UpdateRequest(object=wrap(obj))
        out = await self._call(
            lambda t: self._stub.UpdateStatus(req, timeout=t),
            f"update status of {_describe(obj)}",
            retry=bool(meta(obj).resource_version),
            timeout=timeout,
        )
        return cast(T, unwrap(out))

    @overload
    async def patch(
        self,
        kind: type[T],
        name: str,
        patch: dict[str, Any] | str,
        namespace: str = "",
        *,
        status: bool = False,
        dry_run: bool = False,
        timeout: float | None = None,
        field_validation: str = "",
    ) -> T: ...

    @overload
    async def patch(
        self,
        kind: str,
        name: str,
        patch: dict[str, Any] | str,
        namespace: str = "",
        *,
        status: bool = False,
        dry_run: bool = False,
        timeout: float | None = None,
        field_validation: str = "",
    ) -> Message: ...

    async def patch(
        self,
        kind: type[Any] | str,
        name: str,
        patch: dict[str, Any] | str,
        namespace: str = "",
        *,
        status: bool = False,
        dry_run: bool = False,
        timeout: float | None = None,
        field_validation: str = "",
    ) -> Any:
        """Apply a JSON merge patch; retried only when the patch names a resourceVersion. ``field_validation``
        (Strict, Warn, Ignore; the server's default is Warn) decides about fields unknown to Kubernetes."""
        body = patch if isinstance(patch, str) else json.dumps(patch)
        guarded = '"resourceVersion"' in body
        req = api_pb2.PatchRequest(
            kind=_kind_name(kind),
            namespace=namespace,
            name=name,
            merge_patch=body,
            status=status,
            dry_run="All" if dry_run else "",
            field_validation=field_validation,
        )
        out = await self._call(
            lambda t: self._warned(self._stub.Patch(req, timeout=t)),
            f"patch {req.kind} {name}",
            retry=guarded,
            timeout=timeout,
        )
        return unwrap(out)

    @overload
    async def delete(
        self,
        kind: type[T],
        name: str,
        namespace: str = "",
        *,
        grace_period_seconds: int | None = None,
        propagation_policy: str = "",
        uid: str = "",
        resource_version: str = "",
        dry_run: bool = False,
        timeout: float | None = None,
    ) -> tuple[T, bool]: ...

    @overload
    async def delete(
        self,
        kind: str,
        name: str,
        namespace: str = "",
        *,
        grace_period_seconds: int | None = None,
        propagation_policy: str = "",
        uid: str = "",
        resource_version: str = "",
        dry_run: bool = False,
        timeout: float | None = None,
    ) -> tuple[Message, bool]: ...

    async def delete(
        self,
        kind: type[Any] | str,
        name: str,
        namespace: str = "",
        *,
        grace_period_seconds: int | None = None,
        propagation_policy: str = "",
        uid: str = "",
        resource_version: str = "",
        dry_run: bool = False,
        timeout: float | None = None,
    ) -> tuple[Any, bool]:
        """Delete an object; returns (the object as deleted or marked, whether it is gone). Deleting is
        idempotent, so it is retried."""
        req = api_pb2.DeleteRequest(
            kind=_kind_name(kind),
            namespace=namespace,
            name=name,
            propagation_policy=propagation_policy,
            preconditions=api_pb2.Preconditions(uid=uid, resource_version=resource_version),
            dry_run="All" if dry_run else "",
        )
        if grace_period_seconds is not None:
            req.grace_period_seconds = grace_period_seconds
        out = await self._call(
            lambda t: self._stub.Delete(req, timeout=t), f"delete {req.kind} {name}", retry=True, timeout=timeout
        )
        return unwrap(out.object), out.deleted

    @overload
    def watch(
        self,
        kind: type[T],
        namespace: str = "",
        *,
        resource_version: str = "",
        label_selector: str = "",
        field_selector: str = "",
        allow_bookmarks: bool = True,
    ) -> AsyncIterator[WatchEvent[T]]: ...

    @overload
    def watch(
        self,
        kind: str,
        namespace: str = "",
        *,
        resource_version: str = "",
        label_selector: str = "",
        field_selector: str = "",
        allow_bookmarks: bool = True,
    ) -> AsyncIterator[WatchEvent[Message]]: ...

    async def watch(
        self,
        kind: type[Any] | str,
        namespace: str = "",
        *,
        resource_version: str = "",
        label_selector: str = "",
        field_selector: str = "",
        allow_bookmarks: bool = True,
    ) -> AsyncIterator[WatchEvent[Any]]:
        """Stream events until the server ends the stream; raises ``ApiError`` (OUT_OF_RANGE: relist)."""
        req = api_pb2.WatchRequest(
            kind=_kind_name(kind),
            namespace=namespace,
            resource_version=resource_version,
            label_selector=label_selector,
            field_selector=field_selector,
            allow_bookmarks=allow_bookmarks,
        )
        stream = self._stub.Watch(req)
        try:
            async for ev in stream:
                yield WatchEvent(ev.type, unwrap(ev.object), ev.resource_version)
        except grpc.aio.AioRpcError as err:
            raise self._error(err, f"watch {req.kind}") from None
        finally:
            stream.cancel()

    # ----------------------------------------------------------- pod access

    async def pod_logs(
        self,
        name: str,
        namespace: str = "default",
        *,
        container: str = "",
        follow: bool = False,
        tail_lines: int | None = None,
        previous: bool = False,
        timestamps: bool = False,
        since_seconds: int = 0,
        limit_bytes: int | None = None,
    ) -> AsyncIterator[bytes]:
        """A container's log, in chunks of whole lines of at most 1 MiB (through the API server and the
        node's agent); ``limit_bytes`` stops it after that many bytes (the last line may be cut)."""
        req = podaccess_pb2.PodLogRequest(
            namespace=namespace,
            name=name,
            container=container,
            follow=follow,
            previous=previous,
            timestamps=timestamps,
            since_seconds=since_seconds,
        )
        if tail_lines is not None:
            req.tail_lines = tail_lines
        if limit_bytes is not None:
            req.limit_bytes = limit_bytes
        # Without follow the answer is bounded: it gets the usual deadline.
        stream = self._stub.PodLogs(req, timeout=None if follow else self.config.timeout)
        try:
            async for chunk in stream:
                yield chunk.data
        except grpc.aio.AioRpcError as err:
            raise self._error(err, f"logs of pod {namespace}/{name}") from None
        finally:
            stream.cancel()

    async def pod_exec(
        self,
        name: str,
        command: Sequence[str],
        namespace: str = "default",
        *,
        container: str = "",
        stdin: AsyncIterator[bytes | podaccess_pb2.TerminalSize] | None = None,
        tty: podaccess_pb2.TerminalSize | None = None,
    ) -> AsyncIterator[podaccess_pb2.PodExecOutput]:
        """Run ``command`` in a pod's container: stdout/stderr frames, then one exit_code frame. With ``tty``
        (its first window size) the command runs on a pseudo-terminal, and ``stdin`` may also yield
        ``TerminalSize`` items: the window's new size."""
        start = podaccess_pb2.PodExecStart(
            namespace=namespace,
            name=name,
            container=container,
            command=list(command),
            stdin=stdin is not None,
            tty=tty is not None,
            size=tty,
        )

        async def frames() -> AsyncIterator[podaccess_pb2.PodExecInput]:
            yield podaccess_pb2.PodExecInput(start=start)
            if stdin is not None:
                async for item in stdin:
                    if isinstance(item, podaccess_pb2.TerminalSize):
                        yield podaccess_pb2.PodExecInput(resize=item)
                    else:
                        yield podaccess_pb2.PodExecInput(stdin=item)
                yield podaccess_pb2.PodExecInput(stdin_eof=True)

        stream = self._stub.PodExec(frames())
        try:
            async for frame in stream:
                yield frame
        except grpc.aio.AioRpcError as err:
            raise self._error(err, f"exec in pod {namespace}/{name}") from None
        finally:
            stream.cancel()

    async def port_forward(
        self, name: str, port: int, data: AsyncIterator[bytes], namespace: str = "default"
    ) -> AsyncIterator[bytes]:
        """One TCP connection to ``port`` of a pod, through the API server: send ``data`` (its end is the
        sender's EOF), receive what the port answers until it closes."""
        start = podaccess_pb2.PortForwardStart(namespace=namespace, name=name, port=port)

        async def frames() -> AsyncIterator[podaccess_pb2.PortForwardFrame]:
            yield podaccess_pb2.PortForwardFrame(start=start)
            async for chunk in data:
                yield podaccess_pb2.PortForwardFrame(data=chunk)
            yield podaccess_pb2.PortForwardFrame(eof=True)

        stream = self._stub.PodPortForward(frames())
        try:
            async for frame in stream:
                if frame.WhichOneof("frame") == "data":
                    yield frame.data
                elif frame.WhichOneof("frame") == "eof":
                    return
        except grpc.aio.AioRpcError as err:
            raise self._error(err, f"port-forward to pod {namespace}/{name}:{port}") from None
        finally:
            stream.cancel()


def _describe(obj: Message) -> str:
    m = meta(obj)
    kind = kinds.of_message(obj).kind
    return f"{kind} {m.namespace + '/' if m.namespace else ''}{m.name or m.generate_name}"
