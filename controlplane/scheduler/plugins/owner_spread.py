"""OwnerSpread (score): spread the pods of one owner (ReplicaSet, Job...) over nodes and zones.

Kubernetes' SelectorSpread: a node scores higher the fewer pods of the same controller it (and its zone,
label ``topology.kubernetes.io/zone``) already has; when nodes have zones, the zone counts for 2/3.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import ClassVar

from controlplane.api.pb import core_pb2
from controlplane.scheduler.framework import CycleState, NodeInfo, Normalize

ZONE = "topology.kubernetes.io/zone"


def controller_uid(pod: core_pb2.Pod) -> str:
    """The uid of the pod's controlling owner ("" if none)."""
    return next((r.uid for r in pod.metadata.owner_references if r.controller), "")


@dataclass
class _Counts:
    per_node: Counter[str]
    per_zone: Counter[str]


def _count(state: CycleState, owner: str) -> _Counts:
    per_node: Counter[str] = Counter()
    per_zone: Counter[str] = Counter()
    for info in state.snapshot.nodes:
        n = sum(1 for p in info.pods.values() if controller_uid(p) == owner)
        per_node[info.name] = n
        zone = info.labels.get(ZONE)
        if zone is not None:
            per_zone[zone] += n
    return _Counts(per_node, per_zone)


class OwnerSpread:
    """Replicas of one workload avoid sharing nodes and zones."""

    name: ClassVar[str] = "OwnerSpread"
    normalize: ClassVar[Normalize] = "none"

    def applies(self, state: CycleState, pod: core_pb2.Pod) -> bool:
        """Only pods with a controlling owner."""
        return bool(controller_uid(pod))

    def score(self, state: CycleState, pod: core_pb2.Pod, node: NodeInfo) -> float:
        """0..100: 100 where the owner has no pods yet."""
        owner = controller_uid(pod)
        if not owner:
            return 100.0
        counts: _Counts = state.memo("owner-spread", lambda: _count(state, owner))
        most = max(counts.per_node.values(), default=0)
        node_score = 100.0 * (most - counts.per_node[node.name]) / most if most else 100.0
        zone = node.labels.get(ZONE)
        if zone is None or not counts.per_zone:
            return node_score
        most_zone = max(counts.per_zone.values())
        zone_score = 100.0 * (most_zone - counts.per_zone[zone]) / most_zone if most_zone else 100.0
        return node_score / 3 + 2 * zone_score / 3
