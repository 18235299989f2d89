"""BalancedAllocation (score): prefer nodes whose cpu and memory use stay alike after placing the pod."""

from __future__ import annotations

from typing import ClassVar

from controlplane.api.pb import core_pb2
from controlplane.scheduler.framework import CycleState, NodeInfo, Normalize, Resources, pod_requests


class BalancedAllocation:
    """100 when cpu and memory are used in the same proportion; less as they diverge (1 - std)."""

    name: ClassVar[str] = "BalancedAllocation"
    normalize: ClassVar[Normalize] = "none"

    def score(self, state: CycleState, pod: core_pb2.Pod, node: NodeInfo) -> float:
        """Kubernetes' formula for two resources: (1 - |cpu% - mem%| / 2) * 100."""
        want: Resources = state.memo("requests", lambda: pod_requests(pod))
        alloc = node.allocatable
        if alloc.cpu <= 0 or alloc.memory <= 0:
            return 0.0
        cpu = min(1.0, (node.requested.cpu + want.cpu) / alloc.cpu)
        memory = min(1.0, (node.requested.memory + want.memory) / alloc.memory)
        return (1.0 - abs(cpu - memory) / 2) * 100.0
