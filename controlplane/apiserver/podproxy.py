"""Pod logs, exec and port-forward through the API server: find the pod's node, relay the stream to that node's agent.

Clients need only the API server's address; agents answer only API servers. With TLS the API server
presents its agent client certificate (``system:apiserver``) and checks that the agent's certificate is the
node's own (its DNS name is the node name). One channel per agent endpoint is kept for the server's lifetime
(gRPC reconnects it as needed).
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
import grpc.aio

from controlplane import transport
from controlplane.api import kinds
from controlplane.api.errors import ApiError, InvalidError, PreconditionError, UnavailableError, from_status
from controlplane.api.pb import core_pb2, podaccess_pb2, podaccess_pb2_grpc
from controlplane.apiserver.registry import Registry

_POD = kinds.lookup("Pod")
_NODE = kinds.lookup("Node")


class PodProxy:
    """Relays PodLogs and PodExec to the agent of the pod's node."""

    def __init__(self, registry: Registry, tls: transport.ChannelTLS | None = None) -> None:
        self.registry = registry
        self.tls = tls
        self._channels: dict[str, grpc.aio.Channel] = {}

    async def close(self) -> None:
        """Close every agent channel."""
        for channel in self._channels.values():
            await channel.close()
        self._channels.clear()

    async def _target(self, namespace: str, name: str) -> tuple[core_pb2.Pod, str, podaccess_pb2_grpc.AgentStub]:
        if not name:
            raise InvalidError("a pod name is required", field="name")
        pod = await self.registry.get(_POD, namespace or "default", name)
        assert isinstance(pod, core_pb2.Pod)
        node_name = pod.spec.node_name
        if not node_name:
            raise PreconditionError(f'pod "{name}" is not scheduled to a node yet')
        node = await self.registry.get(_NODE, "", node_name)
        assert isinstance(node, core_pb2.Node)
        return pod, node_name, self.agent(node)

    def agent(self, node: core_pb2.Node) -> podaccess_pb2_grpc.AgentStub:
        """A stub for the node's agent, on a channel kept for the server's life (UNAVAILABLE if the node has not
        published its endpoint)."""
        node_name = node.metadata.name
        ep = node.status.daemon_endpoints.agent_endpoint
        address = ep.address or next((a.address for a in node.status.addresses if a.type == "InternalIP"), "")
        if not address or not ep.port:
            raise UnavailableError(f"node {node_name} has not published its agent endpoint")
        endpoint = f"[{address}]:{ep.port}" if ":" in address else f"{address}:{ep.port}"
        channel_key = f"{node_name}@{endpoint}"
        channel = self._channels.get(channel_key)
        if channel is None:
            tls = dataclasses.replace(self.tls, server_name=node_name) if self.tls else None
            channel = self._channels[channel_key] = transport.make_channel([endpoint], tls)
        return podaccess_pb2_grpc.AgentStub(channel)

    async def logs(
        self, request: podaccess_pb2.PodLogRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[podaccess_pb2.PodLogChunk]:
        """The container's log chunks, as the agent streams them."""
        pod, node_name, stub = await self._target(request.namespace, request.name)
        forwarded = podaccess_pb2.PodLogRequest()
        forwarded.CopyFrom(request)
        forwarded.namespace, forwarded.uid = pod.metadata.namespace, pod.metadata.uid
        call = stub.ContainerLogs(forwarded, timeout=context.time_remaining())
        try:
            async for chunk in call:
                yield chunk
        except grpc.aio.AioRpcError as err:
            raise _relayed(err, node_name) from None
        finally:
            call.cancel()

    async def exec(
        self, requests: AsyncIterator[podaccess_pb2.PodExecInput], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[podaccess_pb2.PodExecOutput]:
        """The command's output frames and exit code, as the agent streams them."""
        async for frame in self._relay(requests, "exec", lambda stub: stub.Exec):
            yield frame

    async def port_forward(
        self, requests: AsyncIterator[podaccess_pb2.PortForwardFrame], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[podaccess_pb2.PortForwardFrame]:
        """One forwarded connection's frames, both ways, between the client and the agent."""
        async for frame in self._relay(requests, "port-forward", lambda stub: stub.PortForward):
            yield frame

    async def _relay(
        self,
        requests: AsyncIterator[Any],
        what: str,
        method: Callable[[podaccess_pb2_grpc.AgentStub], Callable[[AsyncIterator[Any]], Any]],
    ) -> AsyncIterator[Any]:
        """A bidirectional stream whose first frame (``start``) names the pod: that frame goes to the pod's
        agent with the pod's namespace and uid filled in, then every frame both ways as it comes."""
        first = await anext(aiter(requests), None)
        if first is None or first.WhichOneof("frame") != "start":
            raise InvalidError(
                f"the first frame of {'an' if what[0] in 'aeiou' else 'a'} {what} stream must be start", field="start"
            )
        pod, node_name, stub = await self._target(first.start.namespace, first.start.name)
        first.start.namespace, first.start.uid = pod.metadata.namespace, pod.metadata.uid

        async def upstream() -> AsyncIterator[Any]:
            yield first
            async for frame in requests:
                yield frame

        call = method(stub)(upstream())
        try:
            async for frame in call:
                yield frame
        except grpc.aio.AioRpcError as err:
            raise _relayed(err, node_name) from None
        finally:
            with contextlib.suppress(Exception):
                call.cancel()


def _relayed(err: grpc.aio.AioRpcError, node_name: str) -> ApiError:
    """The agent's error as the API server's own, naming the node when the agent could not be reached."""
    details = err.details() or ""
    if err.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.UNKNOWN):
        return UnavailableError(f"cannot reach the agent of node {node_name}: {details}")
    return from_status(err.code(), details)
