"""Pod garbage collector: pods bound to a Node that no longer exists are removed at once (grace 0) — no
agent is left to finish a graceful deletion, and their controllers replace them elsewhere.

reconcile(ns/name): the pod's node missing from the cache ──> confirm with a read from the API ──> delete.
"""

from __future__ import annotations

import contextlib
from typing import ClassVar

from controlplane.api.errors import NotFoundError
from controlplane.api.pb import core_pb2
from controlplane.client.events import NORMAL
from controlplane.controllers.base import Controller, ControllerContext


class PodGCController(Controller):
    """Removes pods of deleted nodes."""

    name: ClassVar[str] = "podgc"
    default_workers = 2

    def __init__(self, ctx: ControllerContext) -> None:
        super().__init__(ctx)
        self.nodes = ctx.informers.informer(core_pb2.Node)
        self.pods = ctx.informers.informer(core_pb2.Pod)
        self.pods.add_event_handler(self._pod_changed, lambda old, new: self._pod_changed(new), None)
        self.nodes.add_event_handler(None, None, self._node_deleted)

    def _pod_changed(self, pod: core_pb2.Pod) -> None:
        if pod.spec.node_name and self.nodes.store.get(pod.spec.node_name) is None:
            self.enqueue(pod)

    def _node_deleted(self, node: core_pb2.Node) -> None:
        for pod in self.pods.store.by_index("nodeName", node.metadata.name):
            self.enqueue(pod)

    async def reconcile(self, key: str) -> None:
        pod = self.pods.store.get(key)
        if pod is None or not pod.spec.node_name or self.nodes.store.get(pod.spec.node_name) is not None:
            return
        try:
            await self.client.get(core_pb2.Node, pod.spec.node_name)
            return  # the cache lags a node that exists
        except NotFoundError:
            pass
        with contextlib.suppress(NotFoundError):
            await self.client.delete(
                core_pb2.Pod, pod.metadata.name, pod.metadata.namespace, uid=pod.metadata.uid, grace_period_seconds=0
            )
            self.recorder.event(pod, NORMAL, "PodGC", f"deleted: its node {pod.spec.node_name} no longer exists")
