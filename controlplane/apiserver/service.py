"""The ``navarch.v1.Api`` gRPC servicer: translates requests to registry calls and errors to status codes."""

from __future__ import annotations

import functools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import grpc
import grpc.aio

from controlplane.api import kinds
from controlplane.api.errors import ApiError
from controlplane.api.fieldvalidation import ignored_field_warnings
from controlplane.api.objects import describe, meta, unwrap, wrap
from controlplane.api.pb import api_pb2, api_pb2_grpc, metrics_pb2, podaccess_pb2
from controlplane.apiserver.binding import bind_pods
from controlplane.apiserver.eviction import evict_pod
from controlplane.apiserver.metricsapi import ResourceMetrics
from controlplane.apiserver.podproxy import PodProxy
from controlplane.apiserver.registry import Registry
from controlplane.apiserver.watchcache import BOOKMARK, CacheEvent

log = logging.getLogger(__name__)

R = TypeVar("R")
Handler = Callable[..., Awaitable[R]]


def unary_handler(fn: Callable[..., Awaitable[R]]) -> Callable[..., Awaitable[R]]:
    """A unary handler whose ApiError becomes its status code; anything else is a bug (INTERNAL), logged as one.
    Every service of the API server uses it."""

    @functools.wraps(fn)
    async def wrapper(self: Any, request: Any, context: grpc.aio.ServicerContext) -> R:
        try:
            return await fn(self, request, context)
        except ApiError as err:
            await context.abort(err.code, err.message)
        except Exception:
            log.exception("BUG: %s failed unexpectedly", fn.__name__)
            await context.abort(grpc.StatusCode.INTERNAL, f"internal error in {fn.__name__} (a bug; see server log)")
        raise AssertionError("unreachable")

    return wrapper


MAX_WARNINGS = 50
MAX_WARNING_CHARS = 512


def _send_warnings(context: grpc.aio.ServicerContext, obj: Any, found: list[str] | None = None) -> None:
    """Kubernetes' Warning headers as ``warning`` trailing metadata: the patch's dropped fields plus set fields
    nothing acts on; bounded in count and length, printable ASCII only (metadata values must be)."""
    warnings = [*(found or []), *(f"{describe(obj)}: {w}" for w in ignored_field_warnings(obj))]
    if not warnings:
        return
    if len(warnings) > MAX_WARNINGS:
        warnings = [*warnings[: MAX_WARNINGS - 1], f"... and {len(warnings) - MAX_WARNINGS + 1} more warnings"]
    clean = ["".join(c if " " <= c <= "~" else "?" for c in w)[:MAX_WARNING_CHARS] for w in warnings]
    context.set_trailing_metadata(tuple(("warning", w) for w in clean))


def _encode_watch_event(ev: CacheEvent) -> bytes:
    return api_pb2.WatchEvent(type=ev.type, object=wrap(ev.obj), resource_version=str(ev.revision)).SerializeToString()


def _serialize_watch_event(message: api_pb2.WatchEvent | bytes) -> bytes:
    return message if isinstance(message, bytes) else message.SerializeToString()


class _Handlers:
    """Receives the generated code's method handlers so that one of them can be changed before registering."""

    def __init__(self) -> None:
        self.handlers: dict[str, grpc.RpcMethodHandler] = {}
        self.service = ""

    def add_generic_rpc_handlers(self, handlers: object) -> None:
        pass  # the same handlers arrive through add_registered_method_handlers

    def add_registered_method_handlers(self, service: str, handlers: dict[str, grpc.RpcMethodHandler]) -> None:
        self.service, self.handlers = service, dict(handlers)


def add_to_server(servicer: ApiService, server: grpc.aio.Server) -> None:
    """Register the Api service. Watch may yield events already encoded (bytes): with one watch per node, an
    event was serialized again for every watcher that sent it."""
    captured = _Handlers()
    api_pb2_grpc.add_ApiServicer_to_server(servicer, captured)
    watch = captured.handlers["Watch"]
    captured.handlers["Watch"] = grpc.unary_stream_rpc_method_handler(
        watch.unary_stream, request_deserializer=watch.request_deserializer, response_serializer=_serialize_watch_event
    )
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(captured.service, captured.handlers),))
    server.add_registered_method_handlers(captured.service, captured.handlers)


class ApiService(api_pb2_grpc.ApiServicer):
    """Create, Get, List, Update, UpdateStatus, Patch, Delete and Watch for every kind; pod logs and exec."""

    def __init__(self, registry: Registry, proxy: PodProxy, *, bookmark_interval: float = 60.0) -> None:
        self.registry = registry
        self.proxy = proxy
        self.resource_metrics = ResourceMetrics(registry.caches, proxy)
        self.bookmark_interval = bookmark_interval

    @unary_handler
    async def Create(self, request: api_pb2.CreateRequest, context: grpc.aio.ServicerContext) -> api_pb2.Object:
        obj = await self.registry.create(unwrap(request.object), dry_run=request.dry_run)
        _send_warnings(context, obj)
        return wrap(obj)

    @unary_handler
    async def Get(self, request: api_pb2.GetRequest, context: grpc.aio.ServicerContext) -> api_pb2.Object:
        info = kinds.lookup(request.kind)
        return wrap(await self.registry.get(info, request.namespace, request.name))

    @unary_handler
    async def List(self, request: api_pb2.ListRequest, context: grpc.aio.ServicerContext) -> api_pb2.ListResponse:
        info = kinds.lookup(request.kind)
        result = await self.registry.list(
            info,
            request.namespace,
            label_selector=request.label_selector,
            field_selector=request.field_selector,
            limit=request.limit,
            cont=getattr(request, "continue"),
            resource_version=request.resource_version,
        )
        resp = api_pb2.ListResponse(
            items=[wrap(obj) for obj in result.items],
            resource_version=str(result.resource_version),
            remaining_item_count=result.remaining,
        )
        setattr(resp, "continue", result.cont)
        return resp

    @unary_handler
    async def Update(self, request: api_pb2.UpdateRequest, context: grpc.aio.ServicerContext) -> api_pb2.Object:
        obj = await self.registry.update(unwrap(request.object), dry_run=request.dry_run)
        _send_warnings(context, obj)
        return wrap(obj)

    @unary_handler
    async def UpdateStatus(self, request: api_pb2.UpdateRequest, context: grpc.aio.ServicerContext) -> api_pb2.Object:
        return wrap(await self.registry.update(unwrap(request.object), status=True, dry_run=request.dry_run))

    @unary_handler
    async def Patch(self, request: api_pb2.PatchRequest, context: grpc.aio.ServicerContext) -> api_pb2.Object:
        info = kinds.lookup(request.kind)
        warnings: list[str] = []
        obj = await self.registry.patch(
            info,
            request.namespace,
            request.name,
            request.merge_patch,
            status=request.status,
            dry_run=request.dry_run,
            field_validation=request.field_validation,
            warnings=warnings,
        )
        _send_warnings(context, obj, warnings)
        return wrap(obj)

    @unary_handler
    async def Delete(self, request: api_pb2.DeleteRequest, context: grpc.aio.ServicerContext) -> api_pb2.DeleteResponse:
        info = kinds.lookup(request.kind)
        obj, deleted = await self.registry.delete(
            info,
            request.namespace,
            request.name,
            grace_period_seconds=request.grace_period_seconds if request.HasField("grace_period_seconds") else None,
            propagation_policy=request.propagation_policy,
            precondition_uid=request.preconditions.uid,
            precondition_rv=request.preconditions.resource_version,
            dry_run=request.dry_run,
        )
        return api_pb2.DeleteResponse(object=wrap(obj), deleted=deleted)

    @unary_handler
    async def BindPods(
        self, request: api_pb2.BindPodsRequest, context: grpc.aio.ServicerContext
    ) -> api_pb2.BindPodsResponse:
        return await bind_pods(self.registry, request)

    @unary_handler
    async def EvictPod(
        self, request: api_pb2.EvictPodRequest, context: grpc.aio.ServicerContext
    ) -> api_pb2.EvictPodResponse:
        return api_pb2.EvictPodResponse(object=wrap(await evict_pod(self.registry, request)))

    # Yields bytes as well as messages (already encoded events: see add_to_server).
    async def Watch(  # type: ignore[override]
        self, request: api_pb2.WatchRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[api_pb2.WatchEvent | bytes]:
        try:
            info = kinds.lookup(request.kind)
            watcher = await self.registry.watch(
                info,
                request.namespace,
                label_selector=request.label_selector,
                field_selector=request.field_selector,
                resource_version=request.resource_version,
            )
        except ApiError as err:
            await context.abort(err.code, err.message)
        cache = self.registry.caches[info.kind]
        last_sent = 0
        try:
            while True:
                ev = await watcher.next(self.bookmark_interval)
                if ev is None:
                    if request.allow_bookmarks and cache.revision > last_sent:
                        last_sent = cache.revision
                        mark = info.message()
                        meta(mark).resource_version = str(last_sent)
                        yield api_pb2.WatchEvent(type=BOOKMARK, object=wrap(mark), resource_version=str(last_sent))
                    continue
                last_sent = ev.revision
                # Encoded once per event and shared by every watcher sending it (see add_to_server).
                yield ev.encoded(_encode_watch_event)
        except ApiError as err:
            await context.abort(err.code, err.message)
        finally:
            cache.unregister(watcher)

    @unary_handler
    async def ListNodeMetrics(
        self, request: metrics_pb2.NodeMetricsRequest, context: grpc.aio.ServicerContext
    ) -> metrics_pb2.NodeMetricsList:
        return await self.resource_metrics.list_nodes(request)

    @unary_handler
    async def ListPodMetrics(
        self, request: metrics_pb2.PodMetricsRequest, context: grpc.aio.ServicerContext
    ) -> metrics_pb2.PodMetricsList:
        return await self.resource_metrics.list_pods(request)

    async def PodLogs(
        self, request: podaccess_pb2.PodLogRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[podaccess_pb2.PodLogChunk]:
        try:
            async for chunk in self.proxy.logs(request, context):
                yield chunk
        except ApiError as err:
            await context.abort(err.code, err.message)

    async def PodExec(
        self, request_iterator: AsyncIterator[podaccess_pb2.PodExecInput], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[podaccess_pb2.PodExecOutput]:
        try:
            async for frame in self.proxy.exec(request_iterator, context):
                yield frame
        except ApiError as err:
            await context.abort(err.code, err.message)

    async def PodPortForward(
        self, request_iterator: AsyncIterator[podaccess_pb2.PortForwardFrame], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[podaccess_pb2.PortForwardFrame]:
        try:
            async for frame in self.proxy.port_forward(request_iterator, context):
                yield frame
        except ApiError as err:
            await context.abort(err.code, err.message)
