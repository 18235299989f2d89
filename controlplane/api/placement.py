"""Placement predicates shared by the scheduler and the controllers (DaemonSet, taint eviction).

Pure functions over API objects, with Kubernetes' semantics: node selector terms (ORed terms of ANDed
requirements, operators In/NotIn/Exists/DoesNotExist/Gt/Lt, matchFields on ``metadata.name``), taints and
tolerations, and label selectors of pod affinity terms.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from controlplane.api.pb import core_pb2, meta_pb2
from controlplane.api.selectors import LabelSelector, from_label_selector_message


def requirement_matches(req: core_pb2.NodeSelectorRequirement, values: Mapping[str, str]) -> bool:
    """One node selector requirement against a label (or field) map."""
    op = req.operator
    has = req.key in values
    if op == "In":
        return has and values[req.key] in req.values
    if op == "NotIn":
        return not has or values[req.key] not in req.values
    if op == "Exists":
        return has
    if op == "DoesNotExist":
        return not has
    if op in ("Gt", "Lt") and has and len(req.values) == 1:
        try:
            actual, bound = int(values[req.key]), int(req.values[0])
        except ValueError:
            return False
        return actual > bound if op == "Gt" else actual < bound
    return False


def term_matches(term: core_pb2.NodeSelectorTerm, node: core_pb2.Node) -> bool:
    """A node selector term: every requirement matches (an empty term matches nothing)."""
    if not term.match_expressions and not term.match_fields:
        return False
    labels = node.metadata.labels
    fields = {"metadata.name": node.metadata.name}
    return all(requirement_matches(r, labels) for r in term.match_expressions) and all(
        requirement_matches(r, fields) for r in term.match_fields
    )


def node_selector_matches(selector: core_pb2.NodeSelector, node: core_pb2.Node) -> bool:
    """Required node affinity: any term matches."""
    return any(term_matches(t, node) for t in selector.node_selector_terms)


def pod_matches_node_selection(pod: core_pb2.Pod, node: core_pb2.Node) -> bool:
    """``nodeSelector`` and required node affinity together."""
    labels = node.metadata.labels
    if any(labels.get(k) != v for k, v in pod.spec.node_selector.items()):
        return False
    affinity = pod.spec.affinity.node_affinity
    if affinity.HasField("required_during_scheduling_ignored_during_execution"):
        return node_selector_matches(affinity.required_during_scheduling_ignored_during_execution, node)
    return True


TAINT_UNREACHABLE = "node.navarch.io/unreachable"
"""NoExecute taint of a node whose agent stopped renewing its Lease (Ready=Unknown)."""
TAINT_NOT_READY = "node.navarch.io/not-ready"
"""NoExecute taint of a node whose agent reports Ready=False."""


def tolerates(toleration: core_pb2.Toleration, taint: core_pb2.Taint) -> bool:
    """Whether one toleration covers one taint."""
    if toleration.effect and toleration.effect != taint.effect:
        return False
    if toleration.operator == "Exists":
        return not toleration.key or toleration.key == taint.key
    return toleration.key == taint.key and toleration.value == taint.value


def untolerated(
    tolerations: Iterable[core_pb2.Toleration], taints: Iterable[core_pb2.Taint], effects: tuple[str, ...]
) -> list[core_pb2.Taint]:
    """The taints with one of ``effects`` that no toleration covers."""
    tols = list(tolerations)
    return [t for t in taints if t.effect in effects and not any(tolerates(tol, t) for tol in tols)]


def describe_taint(taint: core_pb2.Taint) -> str:
    """As kube-scheduler prints it: ``{dedicated: gpu}``."""
    return f"{{{taint.key}: {taint.value}}}" if taint.value else f"{{{taint.key}: }}"


def affinity_selector(term: core_pb2.PodAffinityTerm) -> LabelSelector:
    """The label selector of a pod affinity term."""
    return from_label_selector_message(term.label_selector)


def term_namespaces(term: core_pb2.PodAffinityTerm, pod_namespace: str) -> set[str] | None:
    """The namespaces a term applies to (None: all, when a namespace selector is given and empty)."""
    if term.namespaces:
        return set(term.namespaces)
    if term.HasField("namespace_selector") and _empty(term.namespace_selector):
        return None
    return {pod_namespace}


def _empty(sel: meta_pb2.LabelSelector) -> bool:
    return not sel.match_labels and not sel.match_expressions
