"""NodeAffinityPreferred (score): the sum of the weights of the preferred node affinity terms a node matches."""

from __future__ import annotations

from typing import ClassVar

from controlplane.api.pb import core_pb2
from controlplane.api.placement import term_matches
from controlplane.scheduler.framework import CycleState, NodeInfo, Normalize


class NodeAffinityPreferred:
    """Soft node affinity; scaled so that the best-matching node scores 100."""

    name: ClassVar[str] = "NodeAffinityPreferred"
    normalize: ClassVar[Normalize] = "max"

    def applies(self, state: CycleState, pod: core_pb2.Pod) -> bool:
        """Only pods with preferred node affinity."""
        return bool(pod.spec.affinity.node_affinity.preferred_during_scheduling_ignored_during_execution)

    def score(self, state: CycleState, pod: core_pb2.Pod, node: NodeInfo) -> float:
        """Summed weights of matching terms."""
        terms = pod.spec.affinity.node_affinity.preferred_during_scheduling_ignored_during_execution
        return float(sum(t.weight for t in terms if term_matches(t.preference, node.node)))
