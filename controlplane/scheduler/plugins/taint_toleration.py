"""TaintToleration (filter): every NoSchedule and NoExecute taint of the node is tolerated by the pod."""

from __future__ import annotations

from typing import ClassVar

from controlplane.api.pb import core_pb2
from controlplane.api.placement import describe_taint, untolerated
from controlplane.scheduler.framework import SUCCESS, CycleState, NodeInfo, Status, unresolvable


class TaintToleration:
    """A pod goes only where it tolerates the hard taints."""

    name: ClassVar[str] = "TaintToleration"

    def filter(self, state: CycleState, pod: core_pb2.Pod, node: NodeInfo) -> Status:
        """Reject the node naming the first taint the pod does not tolerate."""
        taints = node.node.spec.taints
        if not taints:
            return SUCCESS
        bad = untolerated(pod.spec.tolerations, taints, ("NoSchedule", "NoExecute"))
        if not bad:
            return SUCCESS
        return unresolvable(f"node(s) had untolerated taint {describe_taint(bad[0])}")
