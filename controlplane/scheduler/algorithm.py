"""One scheduling decision: filter the nodes, score the feasible ones, pick the best. No I/O.

``decide`` is what the scheduler runs for every pod; ``explain`` is the same computation over every node
(no sampling), keeping each node's verdict, for the ``Explain`` RPC. Both break ties between equal totals
with a hash of (pod uid, node name), so a decision is reproducible and ties spread over nodes.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass, field

from controlplane.api.pb import core_pb2
from controlplane.scheduler.config import SchedulerConfig
from controlplane.scheduler.framework import (
    CycleState,
    FilterPlugin,
    NodeInfo,
    ScorePlugin,
    Snapshot,
    Status,
    normalize,
)
from controlplane.scheduler.plugins import FILTERS, SCORES

MIN_FEASIBLE_TO_FIND = 100
"""Kubernetes' floor: at least this many feasible nodes are looked for before sampling stops."""


@dataclass
class Verdict:
    """One node's outcome for one pod."""

    node: str
    status: Status = field(default_factory=Status)
    filter: str = ""
    scores: dict[str, float] = field(default_factory=dict)
    total: float = 0.0


@dataclass
class Decision:
    """The chosen node (or why none), with the verdicts computed on the way."""

    node: str | None
    verdicts: list[Verdict]
    evaluated: int
    """Nodes filtered (fewer than all when sampling stopped early)."""

    def message(self, total_nodes: int) -> str:
        """Kubernetes' message for a pod no node fits."""
        reasons: Counter[str] = Counter()
        for v in self.verdicts:
            for reason in v.status.reasons:
                reasons[reason] += 1
        parts = [f"{n} {r}" for r, n in sorted(reasons.items(), key=lambda item: (-item[1], item[0]))]
        return f"0/{total_nodes} nodes are available: {', '.join(parts)}."


class Algorithm:
    """The configured plugins, and the filter/score/select procedure."""

    def __init__(self, config: SchedulerConfig) -> None:
        self.config = config
        self.filters: list[FilterPlugin] = [FILTERS[name]() for name in config.filters]
        self.scores: list[tuple[ScorePlugin, int]] = [(SCORES[n](), w) for n, w in config.weights.items()]
        self._next_start = 0

    def feasible_to_find(self, total: int) -> int:
        """How many feasible nodes are enough (Kubernetes' numFeasibleNodesToFind)."""
        if total < MIN_FEASIBLE_TO_FIND:
            return total
        pct = self.config.percentage_of_nodes_to_score
        if pct <= 0:
            pct = max(5, 50 - total // 125)
        if pct >= 100:
            return total
        return max(MIN_FEASIBLE_TO_FIND, total * pct // 100)

    def _filter(self, state: CycleState, pod: core_pb2.Pod, node: NodeInfo) -> Verdict:
        for plugin in self.filters:
            status = plugin.filter(state, pod, node)
            if not status.ok:
                return Verdict(node.name, status, plugin.name)
        return Verdict(node.name)

    def _score(self, state: CycleState, pod: core_pb2.Pod, feasible: list[Verdict], snapshot: Snapshot) -> None:
        infos = [snapshot.by_name[v.node] for v in feasible]
        for plugin, weight in self.scores:
            raw = [plugin.score(state, pod, info) for info in infos]
            for verdict, value in zip(feasible, normalize(plugin.normalize, raw), strict=True):
                verdict.scores[plugin.name] = value
                verdict.total += weight * value

    @staticmethod
    def _tiebreak(pod: core_pb2.Pod, node: str) -> bytes:
        return hashlib.blake2b(f"{pod.metadata.uid}/{node}".encode(), digest_size=8).digest()

    def _select(self, pod: core_pb2.Pod, feasible: list[Verdict]) -> str | None:
        if not feasible:
            return None
        best = max(feasible, key=lambda v: (round(v.total, 6), self._tiebreak(pod, v.node)))
        return best.node

    def decide(self, snapshot: Snapshot, pod: core_pb2.Pod) -> Decision:
        """Filter (stopping once enough nodes are feasible), score, and pick."""
        nodes = snapshot.nodes
        total = len(nodes)
        if not total:
            return Decision(None, [], 0)
        want = self.feasible_to_find(total)
        state = CycleState(snapshot)
        feasible: list[Verdict] = []
        rejected: list[Verdict] = []
        start = self._next_start % total
        evaluated = 0
        for i in range(total):
            verdict = self._filter(state, pod, nodes[(start + i) % total])
            evaluated += 1
            (feasible if verdict.status.ok else rejected).append(verdict)
            if len(feasible) >= want:
                break
        # Start the next search where this one stopped, so every node gets its turn (as Kubernetes does).
        self._next_start = (start + evaluated) % total
        if len(feasible) > 1:
            self._score(state, pod, feasible, snapshot)
        return Decision(self._select(pod, feasible), feasible + rejected, evaluated)

    def explain(self, snapshot: Snapshot, pod: core_pb2.Pod) -> Decision:
        """Every node's verdict and scores, and the node ``decide`` would choose without sampling."""
        state = CycleState(snapshot)
        verdicts = [self._filter(state, pod, node) for node in sorted(snapshot.nodes, key=lambda n: n.name)]
        feasible = [v for v in verdicts if v.status.ok]
        if feasible:
            self._score(state, pod, feasible, snapshot)
        return Decision(self._select(pod, feasible), verdicts, len(verdicts))
