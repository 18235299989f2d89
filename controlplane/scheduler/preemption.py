"""Preemption (Kubernetes' DefaultPreemption PostFilter): when no node fits a pod, find the node where
evicting the fewest, least important lower-priority pods makes room, and say which.

For a pod with ``preemptionPolicy: PreemptLowerPriority`` (the default) that no node fits:

1. **Candidates**: nodes that rejected it for a reason removing pods can fix (``Unschedulable``, not
   ``UnschedulableAndUnresolvable`` — a node selector or taint stays whatever is evicted), that run pods of
   lower priority, and where the pod fits once all of those are gone (at most :data:`MAX_CANDIDATES` nodes are
   examined).
2. **Reprieve**: the lower-priority pods are put back one at a time, most important first (higher priority,
   then longer running), those a PodDisruptionBudget protects before the others; each that still leaves room
   stays. What is left are the victims; victims a budget protects are counted as violations.
3. **Pick** (in this order): fewest budget violations; the lowest highest victim priority; the smallest sum
   of victim priorities; the fewest victims; the most recently started most important victims; then name.

No I/O: the scheduler deletes the victims and nominates the node (``status.nominatedNodeName``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from controlplane.api.pb import core_pb2, policy_pb2
from controlplane.api.selectors import from_label_selector_message
from controlplane.scheduler.framework import Code, NodeInfo, Snapshot

MAX_CANDIDATES = 100
"""Nodes examined for preemption per pod (Kubernetes: at least 100, or 10 % of the cluster)."""

Fits = Callable[[Snapshot, NodeInfo], bool]
"""Whether the pod fits ``node`` (a changed copy) within ``snapshot`` (which holds that copy)."""


def priority(pod: core_pb2.Pod) -> int:
    """The pod's priority (0 without one)."""
    return pod.spec.priority


def _start(pod: core_pb2.Pod) -> float:
    ts = pod.status.start_time if pod.status.HasField("start_time") else pod.metadata.creation_timestamp
    return ts.seconds + ts.nanos / 1e9


def _importance(pod: core_pb2.Pod) -> tuple[int, float]:
    """Sort key, most important first: higher priority, then started earlier."""
    return (-priority(pod), _start(pod))


@dataclass
class Candidate:
    """A node and the pods to evict there."""

    node: str
    victims: list[core_pb2.Pod] = field(default_factory=list)
    violations: int = 0

    def key(self) -> tuple[int, int, int, int, float, str]:
        """Smaller is better (the order of the module docstring)."""
        prios = [priority(v) for v in self.victims]
        highest = max(prios) if prios else -(2**31)
        top_started = min((_start(v) for v in self.victims if priority(v) == highest), default=0.0)
        return (self.violations, highest, sum(prios), len(self.victims), -top_started, self.node)


class Budgets:
    """The disruptions each PodDisruptionBudget still allows, spent as victims are chosen."""

    def __init__(self, budgets: list[policy_pb2.PodDisruptionBudget]) -> None:
        self.budgets = budgets

    def protected(self, pods: list[core_pb2.Pod]) -> set[str]:
        """Uids of the pods whose eviction would exceed a budget (taken in the given order)."""
        left = {b.metadata.uid: b.status.disruptions_allowed for b in self.budgets}
        out: set[str] = set()
        for pod in pods:
            for b in self.budgets:
                if b.metadata.namespace != pod.metadata.namespace:
                    continue
                selector = from_label_selector_message(b.spec.selector)
                if selector.empty or not selector.matches(pod.metadata.labels):
                    continue
                if left[b.metadata.uid] <= 0:
                    out.add(pod.metadata.uid)
                else:
                    left[b.metadata.uid] -= 1
        return out


def _substituted(snapshot: Snapshot, trial: NodeInfo) -> Snapshot:
    nodes = [trial if n.name == trial.name else n for n in snapshot.nodes]
    return Snapshot(nodes, {**snapshot.by_name, trial.name: trial})


def _victims_on(
    snapshot: Snapshot, node: NodeInfo, pod: core_pb2.Pod, fits: Fits, budgets: Budgets
) -> Candidate | None:
    lower = [
        p for p in node.pods.values() if priority(p) < priority(pod) and not p.metadata.HasField("deletion_timestamp")
    ]
    if not lower:
        return None
    trial = node.clone()
    for p in lower:
        trial.remove_pod(p.metadata.uid)
    state = _substituted(snapshot, trial)
    if not fits(state, trial):
        return None
    lower.sort(key=_importance)
    protected = budgets.protected(lower)
    candidate = Candidate(node.name)
    # Reprieve the protected ones first, so that budgets are broken only where nothing else makes room.
    for p in [
        *(p for p in lower if p.metadata.uid in protected),
        *(p for p in lower if p.metadata.uid not in protected),
    ]:
        trial.add_pod(p)
        if not fits(state, trial):
            trial.remove_pod(p.metadata.uid)
            candidate.victims.append(p)
            candidate.violations += p.metadata.uid in protected
    return candidate


def find(
    snapshot: Snapshot,
    pod: core_pb2.Pod,
    rejections: dict[str, Code],
    fits: Fits,
    budgets: list[policy_pb2.PodDisruptionBudget],
) -> Candidate | None:
    """The best node to preempt on and its victims, or None (policy Never, nothing of lower priority, or no
    node where evicting would help). ``rejections`` maps each node to its filter verdict's code."""
    if pod.spec.preemption_policy == "Never":
        return None
    spend = Budgets(budgets)
    candidates: list[Candidate] = []
    examined = 0
    for node in sorted(snapshot.nodes, key=lambda n: n.name):
        if rejections.get(node.name) is not Code.UNSCHEDULABLE:
            continue
        found = _victims_on(snapshot, node, pod, fits, spend)
        if found is None:
            continue
        candidates.append(found)
        examined += 1
        if examined >= MAX_CANDIDATES:
            break
    return min(candidates, key=Candidate.key) if candidates else None
