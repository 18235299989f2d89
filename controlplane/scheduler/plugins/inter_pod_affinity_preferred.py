"""InterPodAffinityPreferred (score): preferred pod affinity pulls, preferred anti-affinity pushes.

For each preferred term, every pod the term selects adds (affinity) or subtracts (anti-affinity) the term's
weight to the nodes of its topology domain. Scaled from the lowest (0) to the highest (100).
"""

from __future__ import annotations

from collections import Counter
from typing import ClassVar

from controlplane.api.pb import core_pb2
from controlplane.scheduler.framework import CycleState, NodeInfo, Normalize
from controlplane.scheduler.plugins.inter_pod_affinity import term_matches_pod


def _weights(state: CycleState, pod: core_pb2.Pod) -> Counter[tuple[str, str]]:
    out: Counter[tuple[str, str]] = Counter()
    ns = pod.metadata.namespace
    affinity = pod.spec.affinity
    weighted = [(w, 1) for w in affinity.pod_affinity.preferred_during_scheduling_ignored_during_execution] + [
        (w, -1) for w in affinity.pod_anti_affinity.preferred_during_scheduling_ignored_during_execution
    ]
    for w, sign in weighted:
        term = w.pod_affinity_term
        for info, other in state.snapshot.all_pods():
            value = info.labels.get(term.topology_key)
            if value is not None and term_matches_pod(term, ns, other):
                out[(term.topology_key, value)] += sign * w.weight
    return out


class InterPodAffinityPreferred:
    """Soft co-location and separation of pods."""

    name: ClassVar[str] = "InterPodAffinityPreferred"
    normalize: ClassVar[Normalize] = "minmax"

    def applies(self, state: CycleState, pod: core_pb2.Pod) -> bool:
        """Only pods with preferred pod (anti-)affinity."""
        affinity = pod.spec.affinity
        return bool(
            affinity.pod_affinity.preferred_during_scheduling_ignored_during_execution
            or affinity.pod_anti_affinity.preferred_during_scheduling_ignored_during_execution
        )

    def score(self, state: CycleState, pod: core_pb2.Pod, node: NodeInfo) -> float:
        """Summed signed weights of the domains this node belongs to."""
        affinity = pod.spec.affinity
        if not (
            affinity.pod_affinity.preferred_during_scheduling_ignored_during_execution
            or affinity.pod_anti_affinity.preferred_during_scheduling_ignored_during_execution
        ):
            return 0.0
        weights: Counter[tuple[str, str]] = state.memo("pod-affinity-weights", lambda: _weights(state, pod))
        return float(sum(w for (key, value), w in weights.items() if node.labels.get(key) == value))
