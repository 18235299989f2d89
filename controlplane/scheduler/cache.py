"""The scheduler's view of the cluster: one NodeInfo per node, with bound and assumed pods counted.

Assume-then-bind: when the scheduler picks a node it *assumes* the pod there at once, so the next cycle
already counts it; the binding is written asynchronously. When the informer later delivers the pod with
``spec.nodeName`` set, the assumption is confirmed; if the binding fails, it is forgotten. Finished pods
(Succeeded, Failed) no longer count.

All of this runs on the event loop's thread, and a scheduling cycle does not await between reading the
cache and assuming, so the live NodeInfos are the cycle's snapshot.
"""

from __future__ import annotations

from controlplane.api.pb import core_pb2
from controlplane.scheduler.framework import NodeInfo, Snapshot, has_required_anti_affinity


def counts(pod: core_pb2.Pod) -> bool:
    """Whether a pod occupies resources on its node."""
    return bool(pod.spec.node_name) and pod.status.phase not in ("Succeeded", "Failed")


class SchedulerCache:
    """Nodes, and where every bound or assumed pod is."""

    def __init__(self) -> None:
        self.nodes: dict[str, NodeInfo] = {}
        self._where: dict[str, str] = {}  # pod uid -> node name, bound or assumed
        self.assumed: set[str] = set()
        # Pods bound to nodes the cache does not know yet (the node informer may lag the pod informer).
        self._orphans: dict[str, core_pb2.Pod] = {}
        self._anti_affinity: set[str] = set()  # placed pods with required anti-affinity

    # ------------------------------------------------------------ nodes

    def set_node(self, node: core_pb2.Node) -> None:
        """A node was added or changed."""
        info = self.nodes.get(node.metadata.name)
        if info is None:
            info = self.nodes[node.metadata.name] = NodeInfo(node)
            for uid, pod in list(self._orphans.items()):
                if pod.spec.node_name == info.name:
                    del self._orphans[uid]
                    info.add_pod(pod)
        else:
            info.set_node(node)

    def remove_node(self, name: str) -> None:
        """A node was deleted; its pods wait (as orphans) in case it comes back."""
        info = self.nodes.pop(name, None)
        if info is not None:
            for uid, pod in info.pods.items():
                if uid not in self.assumed:
                    self._orphans[uid] = pod

    # ------------------------------------------------------------- pods

    def set_pod(self, pod: core_pb2.Pod) -> None:
        """A pod was seen (added or changed): count it where it is bound, or stop counting it."""
        uid = pod.metadata.uid
        self.remove_pod(uid)
        if not counts(pod):
            return
        self.assumed.discard(uid)  # confirmed (or bound by someone else: then that is where it is)
        self._place(pod, pod.spec.node_name)

    def remove_pod(self, uid: str) -> None:
        """A pod is gone or no longer counts."""
        self._orphans.pop(uid, None)
        self.assumed.discard(uid)
        self._anti_affinity.discard(uid)
        node = self._where.pop(uid, None)
        if node is not None and node in self.nodes:
            self.nodes[node].remove_pod(uid)

    def assume(self, pod: core_pb2.Pod, node_name: str) -> None:
        """Count ``pod`` on ``node_name`` now, before its binding is written."""
        bound = core_pb2.Pod()
        bound.CopyFrom(pod)
        bound.spec.node_name = node_name
        self.remove_pod(pod.metadata.uid)
        self._place(bound, node_name)
        self.assumed.add(pod.metadata.uid)

    def forget(self, uid: str) -> None:
        """The binding failed: stop counting an assumed pod."""
        if uid in self.assumed:
            self.remove_pod(uid)

    def node_of(self, uid: str) -> str | None:
        """Where a pod is counted (bound or assumed), if anywhere."""
        return self._where.get(uid)

    def _place(self, pod: core_pb2.Pod, node_name: str) -> None:
        uid = pod.metadata.uid
        info = self.nodes.get(node_name)
        if info is None:
            self._orphans[uid] = pod
            return
        info.add_pod(pod)
        self._where[uid] = node_name
        if has_required_anti_affinity(pod):
            self._anti_affinity.add(uid)

    def snapshot(self) -> Snapshot:
        """The nodes as a scheduling cycle sees them (the live objects; see the module docstring)."""
        nodes = list(self.nodes.values())
        return Snapshot(nodes, self.nodes, len(self._anti_affinity))
