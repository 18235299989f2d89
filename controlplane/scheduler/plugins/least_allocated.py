"""LeastAllocated (score): prefer nodes with the most cpu and memory left after placing the pod."""

from __future__ import annotations

from typing import ClassVar

from controlplane.api.pb import core_pb2
from controlplane.scheduler.framework import CycleState, NodeInfo, Normalize, Resources, pod_requests


def _free_fraction(requested: int, allocatable: int) -> float:
    if allocatable <= 0:
        return 0.0
    return max(0.0, (allocatable - requested) / allocatable)


class LeastAllocated:
    """Spreads load: the average free fraction of cpu and memory, as 0..100."""

    name: ClassVar[str] = "LeastAllocated"
    normalize: ClassVar[Normalize] = "none"

    def score(self, state: CycleState, pod: core_pb2.Pod, node: NodeInfo) -> float:
        """100 for an empty node, 0 for a full one."""
        want: Resources = state.memo("requests", lambda: pod_requests(pod))
        cpu = _free_fraction(node.requested.cpu + want.cpu, node.allocatable.cpu)
        memory = _free_fraction(node.requested.memory + want.memory, node.allocatable.memory)
        return 50.0 * (cpu + memory)
