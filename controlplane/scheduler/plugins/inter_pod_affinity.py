"""InterPodAffinity (filter): required pod affinity and anti-affinity, in both directions.

- Every required affinity term of the pod needs a matching pod in the node's topology domain (the nodes
  sharing the node's value of ``topologyKey``). The first pod of a group that matches its own term may go
  anywhere, as in Kubernetes, or a self-affine group could never start.
- No required anti-affinity term of the pod may match a pod in the node's domain.
- No pod already running may have a required anti-affinity term that matches this pod in the node's domain.

The domains are computed once per cycle from the snapshot, so each node costs a few set lookups.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import ClassVar

from controlplane.api.pb import core_pb2
from controlplane.api.placement import affinity_selector, term_namespaces
from controlplane.scheduler.framework import SUCCESS, CycleState, NodeInfo, Snapshot, Status, unschedulable

Domain = tuple[str, str]  # (topologyKey, value)


def term_matches_pod(term: core_pb2.PodAffinityTerm, owner_namespace: str, pod: core_pb2.Pod) -> bool:
    """Whether ``pod`` is selected by ``term`` of a pod in ``owner_namespace``."""
    namespaces = term_namespaces(term, owner_namespace)
    if namespaces is not None and pod.metadata.namespace not in namespaces:
        return False
    return affinity_selector(term).matches(pod.metadata.labels)


def domains_with_matches(
    snapshot: Snapshot, terms: Iterable[core_pb2.PodAffinityTerm], namespace: str
) -> list[set[Domain]]:
    """For each term: the topology domains that hold at least one pod the term selects."""
    out: list[set[Domain]] = []
    for term in terms:
        found: set[Domain] = set()
        key = term.topology_key
        for info, other in snapshot.all_pods():
            value = info.labels.get(key)
            if value is not None and term_matches_pod(term, namespace, other):
                found.add((key, value))
        out.append(found)
    return out


@dataclass
class _Prepared:
    affinity: list[tuple[core_pb2.PodAffinityTerm, set[Domain], bool]]
    anti: list[tuple[core_pb2.PodAffinityTerm, set[Domain]]]
    forbidden: set[Domain]


def _prepare(state: CycleState, pod: core_pb2.Pod) -> _Prepared:
    snapshot = state.snapshot
    ns = pod.metadata.namespace
    aff = list(pod.spec.affinity.pod_affinity.required_during_scheduling_ignored_during_execution)
    anti = list(pod.spec.affinity.pod_anti_affinity.required_during_scheduling_ignored_during_execution)
    aff_domains = domains_with_matches(snapshot, aff, ns)
    anti_domains = domains_with_matches(snapshot, anti, ns)
    affinity = [
        # No pod anywhere matches, but the pod matches its own term: it may start the group.
        (t, d, not d and term_matches_pod(t, ns, pod))
        for t, d in zip(aff, aff_domains, strict=True)
    ]
    forbidden: set[Domain] = set()
    for info, other in snapshot.all_pods():
        for term in other.spec.affinity.pod_anti_affinity.required_during_scheduling_ignored_during_execution:
            value = info.labels.get(term.topology_key)
            if value is not None and term_matches_pod(term, other.metadata.namespace, pod):
                forbidden.add((term.topology_key, value))
    return _Prepared(affinity, list(zip(anti, anti_domains, strict=True)), forbidden)


class InterPodAffinity:
    """Pods that must (not) run near other pods."""

    name: ClassVar[str] = "InterPodAffinity"

    def applies(self, state: CycleState, pod: core_pb2.Pod) -> bool:
        """Pods with required (anti-)affinity, or any pod while placed pods have required anti-affinity."""
        affinity = pod.spec.affinity
        return bool(
            affinity.pod_affinity.required_during_scheduling_ignored_during_execution
            or affinity.pod_anti_affinity.required_during_scheduling_ignored_during_execution
            or state.snapshot.anti_affinity_pods
        )

    def filter(self, state: CycleState, pod: core_pb2.Pod, node: NodeInfo) -> Status:
        """Reject nodes whose domain breaks a required (anti-)affinity rule."""
        prepared: _Prepared = state.memo("inter-pod-affinity", lambda: _prepare(state, pod))
        for term, domains, first_of_group in prepared.affinity:
            value = node.labels.get(term.topology_key)
            if value is None or ((term.topology_key, value) not in domains and not first_of_group):
                return unschedulable("node(s) didn't match pod affinity rules")
        for term, domains in prepared.anti:
            value = node.labels.get(term.topology_key)
            if value is not None and (term.topology_key, value) in domains:
                return unschedulable("node(s) didn't match pod anti-affinity rules")
        for key, value in prepared.forbidden:
            if node.labels.get(key) == value:
                return unschedulable("node(s) didn't satisfy existing pods anti-affinity rules")
        return SUCCESS
