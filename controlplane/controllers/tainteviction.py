"""Taint eviction controller: deletes the pods of a node with ``NoExecute`` taints they do not tolerate —
at once without a matching toleration, or once the shortest ``tolerationSeconds`` of the matching ones has
passed since the taint was added. Their controllers then replace them elsewhere.

reconcile(node): for each pod bound to the node, evict now or look again when its toleration runs out.
"""

from __future__ import annotations

import contextlib
from typing import ClassVar

from controlplane.api.errors import NotFoundError
from controlplane.api.pb import core_pb2
from controlplane.api.placement import tolerates
from controlplane.client.events import NORMAL
from controlplane.controllers.base import Controller, ControllerContext


def eviction_delay(pod: core_pb2.Pod, taints: list[core_pb2.Taint], now: float) -> float | None:
    """Seconds until the pod must go (0: now), or None if it tolerates every NoExecute taint for ever."""
    delay: float | None = None
    for taint in taints:
        if taint.effect != "NoExecute":
            continue
        matching = [t for t in pod.spec.tolerations if tolerates(t, taint)]
        if not matching:
            return 0.0
        limits = [t.toleration_seconds for t in matching if t.HasField("toleration_seconds")]
        if len(limits) < len(matching):
            continue  # one toleration without a limit tolerates it for ever
        added = taint.time_added.seconds + taint.time_added.nanos / 1e9 if taint.HasField("time_added") else now
        left = max(0.0, added + max(0, min(limits)) - now)
        delay = left if delay is None else min(delay, left)
    return delay


class TaintEvictionController(Controller):
    """Evicts pods from nodes with NoExecute taints they do not tolerate."""

    name: ClassVar[str] = "taint-eviction"
    default_workers = 2

    def __init__(self, ctx: ControllerContext) -> None:
        super().__init__(ctx)
        self.nodes = ctx.informers.informer(core_pb2.Node)
        self.pods = ctx.informers.informer(core_pb2.Pod)
        self.nodes.add_event_handler(self._node_changed, lambda old, new: self._node_changed(new), None)
        self.pods.add_event_handler(self._pod_changed, lambda old, new: self._pod_changed(new), None)

    def _node_changed(self, node: core_pb2.Node) -> None:
        if any(t.effect == "NoExecute" for t in node.spec.taints):
            self.queue.add(node.metadata.name)

    def _pod_changed(self, pod: core_pb2.Pod) -> None:
        if pod.spec.node_name:
            node = self.nodes.store.get(pod.spec.node_name)
            if node is not None:
                self._node_changed(node)

    async def reconcile(self, key: str) -> None:
        node = self.nodes.store.get(key)
        if node is None:
            return
        taints = [t for t in node.spec.taints if t.effect == "NoExecute"]
        if not taints:
            return
        now = self.ctx.now().timestamp()
        soonest: float | None = None
        for pod in self.pods.store.by_index("nodeName", key):
            if pod.metadata.HasField("deletion_timestamp") or pod.status.phase in ("Succeeded", "Failed"):
                continue
            delay = eviction_delay(pod, taints, now)
            if delay is None:
                continue
            if delay > 0:
                soonest = delay if soonest is None else min(soonest, delay)
                continue
            with contextlib.suppress(NotFoundError):
                await self.client.delete(core_pb2.Pod, pod.metadata.name, pod.metadata.namespace, uid=pod.metadata.uid)
                self.recorder.event(
                    pod,
                    NORMAL,
                    "TaintManagerEviction",
                    f"Marking for deletion Pod {pod.metadata.namespace}/{pod.metadata.name}",
                )
        if soonest is not None:
            self.queue.add_after(key, soonest + 0.1)
