"""NodeSelection (filter): ``nodeSelector`` labels and required node affinity both match the node."""

from __future__ import annotations

from typing import ClassVar

from controlplane.api.pb import core_pb2
from controlplane.api.placement import pod_matches_node_selection
from controlplane.scheduler.framework import SUCCESS, CycleState, NodeInfo, Status, unresolvable


class NodeSelection:
    """Kubernetes' NodeAffinity filter (which also checks nodeSelector)."""

    name: ClassVar[str] = "NodeSelection"

    def applies(self, state: CycleState, pod: core_pb2.Pod) -> bool:
        """Only pods with a nodeSelector or required node affinity."""
        return bool(pod.spec.node_selector) or pod.spec.affinity.node_affinity.HasField(
            "required_during_scheduling_ignored_during_execution"
        )

    def filter(self, state: CycleState, pod: core_pb2.Pod, node: NodeInfo) -> Status:
        """Reject nodes the pod's selector or required affinity excludes."""
        spec = pod.spec
        if not spec.node_selector and not spec.affinity.node_affinity.HasField(
            "required_during_scheduling_ignored_during_execution"
        ):
            return SUCCESS
        if pod_matches_node_selection(pod, node.node):
            return SUCCESS
        return unresolvable("node(s) didn't match Pod's node affinity/selector")
