"""TaintPreferNoSchedule (score): fewer untolerated ``PreferNoSchedule`` taints is better."""

from __future__ import annotations

from typing import ClassVar

from controlplane.api.pb import core_pb2
from controlplane.api.placement import untolerated
from controlplane.scheduler.framework import CycleState, NodeInfo, Normalize


class TaintPreferNoSchedule:
    """Soft taints push pods elsewhere when there is a choice."""

    name: ClassVar[str] = "TaintPreferNoSchedule"
    normalize: ClassVar[Normalize] = "reverse"

    def score(self, state: CycleState, pod: core_pb2.Pod, node: NodeInfo) -> float:
        """The count of soft taints the pod does not tolerate."""
        if not node.node.spec.taints:
            return 0.0
        return float(len(untolerated(pod.spec.tolerations, node.node.spec.taints, ("PreferNoSchedule",))))
