"""PodTopologySpreadPreferred (score): ``whenUnsatisfiable: ScheduleAnyway`` constraints as a preference."""

from __future__ import annotations

from collections import Counter
from typing import ClassVar

from controlplane.api.pb import core_pb2
from controlplane.scheduler.framework import CycleState, NodeInfo, Normalize
from controlplane.scheduler.plugins.topology_spread import constraints, domain_counts


class PodTopologySpreadPreferred:
    """Fewer matching pods in the node's domains is better."""

    name: ClassVar[str] = "PodTopologySpreadPreferred"
    normalize: ClassVar[Normalize] = "reverse"

    def applies(self, state: CycleState, pod: core_pb2.Pod) -> bool:
        """Only pods with ScheduleAnyway constraints."""
        return bool(constraints(pod, "ScheduleAnyway"))

    def score(self, state: CycleState, pod: core_pb2.Pod, node: NodeInfo) -> float:
        """Matching pods in the node's domain, summed over the soft constraints."""
        soft = constraints(pod, "ScheduleAnyway")
        if not soft:
            return 0.0
        counted: list[Counter[str]] = state.memo("spread-soft", lambda: [domain_counts(state, pod, c) for c in soft])
        total = 0
        for constraint, counts in zip(soft, counted, strict=True):
            value = node.labels.get(constraint.topology_key)
            total += counts[value] if value is not None else max(counts.values(), default=0) + 1
        return float(total)
