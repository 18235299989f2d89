"""PodTopologySpread (filter): ``whenUnsatisfiable: DoNotSchedule`` constraints hold after placing the pod.

For each constraint, matching pods (same namespace, the constraint's selector) are counted per domain of
``topologyKey`` over the nodes that carry the key and that the pod's node selection admits. A node is
feasible when ``count(its domain) + 1 - min(count over domains) <= maxSkew``; a node without the key is
not.
"""

from __future__ import annotations

from collections import Counter
from typing import ClassVar

from controlplane.api.pb import core_pb2
from controlplane.api.placement import pod_matches_node_selection
from controlplane.api.selectors import from_label_selector_message
from controlplane.scheduler.framework import SUCCESS, CycleState, NodeInfo, Status, unschedulable


def domain_counts(state: CycleState, pod: core_pb2.Pod, constraint: core_pb2.TopologySpreadConstraint) -> Counter[str]:
    """Matching pods per domain value, every eligible domain present (possibly with 0)."""
    selector = from_label_selector_message(constraint.label_selector)
    key = constraint.topology_key
    counts: Counter[str] = Counter()
    for info in state.snapshot.nodes:
        value = info.labels.get(key)
        if value is None or not pod_matches_node_selection(pod, info.node):
            continue
        counts[value] += 0
        for other in info.pods.values():
            if other.metadata.namespace == pod.metadata.namespace and selector.matches(other.metadata.labels):
                counts[value] += 1
    return counts


def constraints(pod: core_pb2.Pod, mode: str) -> list[core_pb2.TopologySpreadConstraint]:
    """The pod's constraints with ``whenUnsatisfiable`` = ``mode``."""
    return [c for c in pod.spec.topology_spread_constraints if (c.when_unsatisfiable or "DoNotSchedule") == mode]


class PodTopologySpread:
    """Keep matching pods evenly spread over zones, nodes or any topology."""

    name: ClassVar[str] = "PodTopologySpread"

    def applies(self, state: CycleState, pod: core_pb2.Pod) -> bool:
        """Only pods with DoNotSchedule constraints."""
        return bool(constraints(pod, "DoNotSchedule"))

    def filter(self, state: CycleState, pod: core_pb2.Pod, node: NodeInfo) -> Status:
        """Reject nodes where placing the pod would exceed a hard constraint's maxSkew."""
        hard = constraints(pod, "DoNotSchedule")
        if not hard:
            return SUCCESS
        counted: list[Counter[str]] = state.memo("spread-hard", lambda: [domain_counts(state, pod, c) for c in hard])
        for constraint, counts in zip(hard, counted, strict=True):
            value = node.labels.get(constraint.topology_key)
            if value is None:
                return unschedulable("node(s) didn't match pod topology spread constraints (missing required label)")
            lowest = min(counts.values()) if counts else 0
            if counts[value] + 1 - lowest > (constraint.max_skew or 1):
                return unschedulable("node(s) didn't match pod topology spread constraints")
        return SUCCESS
