"""The HorizontalPodAutoscaler's arithmetic, as Kubernetes' ``podautoscaler`` computes it: pure functions.

- A metric's proposal: Utilization compares the pods' summed usage with their summed requests; AverageValue
  compares the mean usage with the target. Within ``tolerance`` (10 %) of the target nothing changes;
  otherwise the proposal is ``ceil(ratio * pods)``. Several metrics: the largest proposal wins.
- Stabilization: a scale-up goes no higher than the lowest recommendation of its window (default 0 s), a
  scale-down no lower than the highest of its window (default 300 s), so a brief dip does not shed pods.
- Rate limits (``behavior`` policies): in each policy's period at most ``value`` pods or ``value`` percent
  are added (scale-up default: the larger of 100 % and 4 pods per 15 s) or removed (scale-down default:
  100 % per 15 s); ``selectPolicy`` Max takes the policy allowing the most change, Min the least, Disabled
  none.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

TOLERANCE = 0.1
DEFAULT_SCALE_DOWN_WINDOW = 300
"""Seconds (``--horizontal-pod-autoscaler-downscale-stabilization``)."""


class MissingRequest(Exception):
    """A Utilization target over pods that do not request the resource."""


@dataclass(frozen=True)
class PodSample:
    """One pod's usage of a resource and its request for it (cores or bytes; request 0: none)."""

    usage: float
    request: float


@dataclass(frozen=True)
class Proposal:
    """What one metric asks for, and the figure it saw (percent for Utilization, the mean for AverageValue)."""

    replicas: int
    current: float


def utilization_proposal(
    current: int, samples: Sequence[PodSample], target_percent: int, tolerance: float = TOLERANCE
) -> Proposal:
    """Replicas that would bring the pods' usage to ``target_percent`` of their requests."""
    if any(s.request <= 0 for s in samples):
        raise MissingRequest("some pods do not request the resource")
    requested = sum(s.request for s in samples)
    utilization = 100.0 * sum(s.usage for s in samples) / requested
    ratio = utilization / target_percent
    if abs(ratio - 1.0) <= tolerance:
        return Proposal(current, utilization)
    return Proposal(math.ceil(ratio * len(samples)), utilization)


def average_value_proposal(
    current: int, samples: Sequence[PodSample], target: float, tolerance: float = TOLERANCE
) -> Proposal:
    """Replicas that would bring the mean usage per pod to ``target``."""
    total = sum(s.usage for s in samples)
    mean = total / len(samples)
    if abs(mean / target - 1.0) <= tolerance:
        return Proposal(current, mean)
    return Proposal(math.ceil(total / target), mean)


@dataclass(frozen=True)
class Policy:
    """One rate limit: ``kind`` Pods or Percent, ``value``, per ``period`` seconds."""

    kind: str
    value: int
    period: int


@dataclass(frozen=True)
class Rules:
    """One direction's behaviour."""

    window: int
    select: str = "Max"
    policies: tuple[Policy, ...] = ()


DEFAULT_SCALE_UP = Rules(0, "Max", (Policy("Percent", 100, 15), Policy("Pods", 4, 15)))


def default_scale_down(window: int = DEFAULT_SCALE_DOWN_WINDOW) -> Rules:
    """Kubernetes' scale-down default (the window from the controller's flag)."""
    return Rules(window, "Max", (Policy("Percent", 100, 15),))


@dataclass(frozen=True)
class Recommendation:
    at: float
    replicas: int


@dataclass(frozen=True)
class ScaleEvent:
    at: float
    delta: int
    """Replicas added (positive) or removed (negative)."""


def stabilize(current: int, desired: int, history: Sequence[Recommendation], now: float, up: Rules, down: Rules) -> int:
    """The recommendation after the stabilization windows (``history`` holds earlier recommendations)."""
    up_bound = down_bound = desired
    for rec in history:
        if now - rec.at <= up.window:
            up_bound = min(up_bound, rec.replicas)
        if now - rec.at <= down.window:
            down_bound = max(down_bound, rec.replicas)
    result = current
    if result < up_bound:
        result = up_bound
    if result > down_bound:
        result = down_bound
    return result


def _changed_within(events: Sequence[ScaleEvent], now: float, period: int, sign: int) -> int:
    return sum(abs(e.delta) for e in events if now - e.at <= period and (e.delta > 0) == (sign > 0) and e.delta)


def scale_up_limit(current: int, events: Sequence[ScaleEvent], now: float, rules: Rules) -> int:
    """The most replicas the policies allow now."""
    if rules.select == "Disabled" or not rules.policies:
        return current if rules.select == "Disabled" else 2**31 - 1
    proposals = []
    for p in rules.policies:
        start = current - _changed_within(events, now, p.period, +1)
        proposals.append(start + p.value if p.kind == "Pods" else math.ceil(start * (1 + p.value / 100)))
    limit = max(proposals) if rules.select == "Max" else min(proposals)
    return max(limit, current)


def scale_down_limit(current: int, events: Sequence[ScaleEvent], now: float, rules: Rules) -> int:
    """The fewest replicas the policies allow now."""
    if rules.select == "Disabled" or not rules.policies:
        return current if rules.select == "Disabled" else 0
    proposals = []
    for p in rules.policies:
        start = current + _changed_within(events, now, p.period, -1)
        proposals.append(start - p.value if p.kind == "Pods" else int(start * (1 - p.value / 100)))
    limit = min(proposals) if rules.select == "Max" else max(proposals)
    return min(limit, current)


@dataclass
class Decision:
    """The replicas to set and why it is not simply the metrics' proposal."""

    replicas: int
    limited: str = ""
    """Why the count was held back (``TooFewReplicas``, ``TooManyReplicas``, ``ScaleUpLimit``,
    ``ScaleDownLimit``), or ""."""
    notes: list[str] = field(default_factory=list)


def decide(
    current: int,
    proposed: int,
    *,
    minimum: int,
    maximum: int,
    history: Sequence[Recommendation],
    events: Sequence[ScaleEvent],
    now: float,
    up: Rules,
    down: Rules,
) -> Decision:
    """The new replica count: stabilized, rate-limited, and within ``minimum``..``maximum``."""
    stable = stabilize(current, proposed, history, now, up, down)
    replicas, limited = stable, ""
    if stable > current:
        ceiling = min(maximum, scale_up_limit(current, events, now, up))
        if stable > ceiling:
            replicas, limited = ceiling, "TooManyReplicas" if ceiling == maximum else "ScaleUpLimit"
    elif stable < current:
        floor = max(minimum, scale_down_limit(current, events, now, down))
        if stable < floor:
            replicas, limited = floor, "TooFewReplicas" if floor == minimum else "ScaleDownLimit"
    if replicas > maximum:
        replicas, limited = maximum, "TooManyReplicas"
    if replicas < minimum:
        replicas, limited = minimum, "TooFewReplicas"
    return Decision(replicas, limited)
