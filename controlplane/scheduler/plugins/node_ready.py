"""NodeReady (filter): the node reports Ready=True and is not cordoned (``spec.unschedulable``)."""

from __future__ import annotations

from typing import ClassVar

from controlplane.api.pb import core_pb2
from controlplane.scheduler.framework import SUCCESS, CycleState, NodeInfo, Status, unresolvable


class NodeReady:
    """Only Ready, schedulable nodes take new pods."""

    name: ClassVar[str] = "NodeReady"

    def filter(self, state: CycleState, pod: core_pb2.Pod, node: NodeInfo) -> Status:
        """Reject cordoned and not-Ready nodes."""
        if node.node.spec.unschedulable:
            return unresolvable("node(s) were unschedulable")
        if node.ready != "True":
            return unresolvable("node(s) were not ready")
        return SUCCESS
