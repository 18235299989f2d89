"""One scheduling decision: filter the nodes, score the feasible ones, pick the best. No I/O.

``decide`` is what the scheduler runs for every pod; ``explain`` is the same computation over every node
(no sampling), keeping each node's verdict, for the ``Explain`` RPC. Both break ties between equal totals
with a hash of (pod uid, node name), so a decision is reproducible and ties spread over nodes.
"""

from __future__ import annotations

import zlib
from collections import Counter
from dataclasses import dataclass, field

from controlplane.api.pb import core_pb2
from controlplane.scheduler.config import SchedulerConfig
from controlplane.scheduler.framework import (
    Code,
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

    def _active(self, state: CycleState, pod: core_pb2.Pod) -> tuple[list[FilterPlugin], list[tuple[ScorePlugin, int]]]:
        """The plugins that can make a difference for this pod (the others are skipped this cycle)."""
        return (
            [f for f in self.filters if _applies(f, state, pod)],
            [(s, w) for s, w in self.scores if _applies(s, state, pod)],
        )

    @staticmethod
    def _first_failure(
        filters: list[FilterPlugin], state: CycleState, pod: core_pb2.Pod, node: NodeInfo
    ) -> Verdict | None:
        for plugin in filters:
            status = plugin.filter(state, pod, node)
            if status.code is not Code.SUCCESS:
                return Verdict(node.name, status, plugin.name)
        return None

    @staticmethod
    def _totals(
        scores: list[tuple[ScorePlugin, int]],
        state: CycleState,
        pod: core_pb2.Pod,
        infos: list[NodeInfo],
        detail: list[dict[str, float]] | None = None,
    ) -> list[float]:
        totals = [0.0] * len(infos)
        for plugin, weight in scores:
            normalized = normalize(plugin.normalize, [plugin.score(state, pod, info) for info in infos])
            for i, value in enumerate(normalized):
                totals[i] += weight * value
                if detail is not None:
                    detail[i][plugin.name] = value
        return totals

    @staticmethod
    def _pick(pod: core_pb2.Pod, infos: list[NodeInfo], totals: list[float]) -> str:
        best = max(totals)
        ties = [info for info, total in zip(infos, totals, strict=True) if total >= best - 1e-9]
        if len(ties) == 1:
            return ties[0].name
        # Mix a per-pod number with each node's: reproducible, spreads ties, and cheap for hundreds of nodes.
        salt = zlib.crc32(pod.metadata.uid.encode())
        return max(ties, key=lambda info: ((info.tiebreak ^ salt) * 2654435761) & 0xFFFFFFFF).name

    def decide(self, snapshot: Snapshot, pod: core_pb2.Pod) -> Decision:
        """Filter (stopping once enough nodes are feasible), score, and pick. The decision's verdicts are
        the rejected nodes only (enough for the unschedulable message)."""
        nodes = snapshot.nodes
        total = len(nodes)
        if not total:
            return Decision(None, [], 0)
        want = self.feasible_to_find(total)
        state = CycleState(snapshot)
        filters, scores = self._active(state, pod)
        feasible: list[NodeInfo] = []
        rejected: list[Verdict] = []
        start = self._next_start % total
        evaluated = 0
        for i in range(total):
            node = nodes[(start + i) % total]
            evaluated += 1
            failure = self._first_failure(filters, state, pod, node)
            if failure is None:
                feasible.append(node)
                if len(feasible) >= want:
                    break
            else:
                rejected.append(failure)
        # Start the next search where this one stopped, so every node gets its turn (as Kubernetes does).
        self._next_start = (start + evaluated) % total
        if not feasible:
            return Decision(None, rejected, evaluated)
        if len(feasible) == 1:
            return Decision(feasible[0].name, rejected, evaluated)
        return Decision(self._pick(pod, feasible, self._totals(scores, state, pod, feasible)), rejected, evaluated)

    def fits(self, snapshot: Snapshot, pod: core_pb2.Pod, node: NodeInfo) -> bool:
        """Whether ``pod`` passes every filter on ``node`` within ``snapshot`` (preemption's what-if)."""
        state = CycleState(snapshot)
        filters, _ = self._active(state, pod)
        return self._first_failure(filters, state, pod, node) is None

    def explain(self, snapshot: Snapshot, pod: core_pb2.Pod) -> Decision:
        """Every node's verdict and scores, and the node ``decide`` would choose without sampling."""
        state = CycleState(snapshot)
        filters, scores = self._active(state, pod)
        verdicts: list[Verdict] = []
        feasible: list[NodeInfo] = []
        for node in sorted(snapshot.nodes, key=lambda n: n.name):
            failure = self._first_failure(filters, state, pod, node)
            verdicts.append(failure or Verdict(node.name))
            if failure is None:
                feasible.append(node)
        if not feasible:
            return Decision(None, verdicts, len(verdicts))
        by_name = {v.node: v for v in verdicts}
        detail: list[dict[str, float]] = [by_name[n.name].scores for n in feasible]
        totals = self._totals(scores, state, pod, feasible, detail)
        for node, value in zip(feasible, totals, strict=True):
            by_name[node.name].total = value
        chosen = feasible[0].name if len(feasible) == 1 else self._pick(pod, feasible, totals)
        return Decision(chosen, verdicts, len(verdicts))


def _applies(plugin: FilterPlugin | ScorePlugin, state: CycleState, pod: core_pb2.Pod) -> bool:
    """A plugin may declare ``applies(state, pod)``; without it, it always applies."""
    check = getattr(plugin, "applies", None)
    return True if check is None else bool(check(state, pod))
