"""NodeResourcesFit (filter): the pod's requests fit in what the node has left (cpu, memory, pod count).

"Left" counts every pod on the node, including pods the scheduler assumed there but has not bound yet.
"""

from __future__ import annotations

from typing import ClassVar

from controlplane.api.pb import core_pb2
from controlplane.scheduler.framework import (
    SUCCESS,
    CycleState,
    NodeInfo,
    Resources,
    Status,
    pod_requests,
    unschedulable,
)


class NodeResourcesFit:
    """Requests must fit in allocatable minus the requests of the pods already there."""

    name: ClassVar[str] = "NodeResourcesFit"

    def filter(self, state: CycleState, pod: core_pb2.Pod, node: NodeInfo) -> Status:
        """Reject the node with one reason per exhausted resource."""
        want: Resources = state.memo("requests", lambda: pod_requests(pod))
        have, used = node.allocatable, node.requested
        reasons = []
        if used.pods + 1 > have.pods:
            reasons.append("Too many pods")
        if want.cpu and used.cpu + want.cpu > have.cpu:
            reasons.append("Insufficient cpu")
        if want.memory and used.memory + want.memory > have.memory:
            reasons.append("Insufficient memory")
        return unschedulable(*reasons) if reasons else SUCCESS
