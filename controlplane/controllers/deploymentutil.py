"""A Deployment's scaling arithmetic, as pure functions (Kubernetes' ``deployment_util`` is the model).

When ``spec.replicas`` changes while a rolling update has several ReplicaSets with pods, each keeps its share:
the change is spread in proportion to their sizes, so a half-done rollout stays half done at the new size
instead of the newest (or oldest) ReplicaSet absorbing it all.

- :func:`is_scaling_event`: an active ReplicaSet remembers (``deployment.kubernetes.io/desired-replicas``)
  a Deployment size other than today's;
- :func:`proportional_sizes`: the new size of each active ReplicaSet. The allowed total is
  ``replicas + maxSurge`` (0 when scaling to 0); each set's share is its size scaled by new allowed total over
  the allowed total it was sized for (``deployment.kubernetes.io/max-replicas``), rounded half away from
  zero, and never more than what is left to add (or remove); what rounding leaves over goes to the first set
  in order — the largest (newest among equals) when growing, the largest (oldest among equals) when
  shrinking.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class SetSize:
    """What the arithmetic needs of one ReplicaSet."""

    name: str
    replicas: int
    created: float
    """Creation time (epoch seconds), to order equals."""
    max_replicas: int | None = None
    """The ``max-replicas`` annotation: the allowed total this set was last sized for."""
    desired: int | None = None
    """The ``desired-replicas`` annotation: the Deployment size this set was last sized for."""


def is_scaling_event(sets: Iterable[SetSize], replicas: int) -> bool:
    """Whether the Deployment was resized since its active ReplicaSets were last sized."""
    return any(s.replicas > 0 and s.desired is not None and s.desired != replicas for s in sets)


def _fraction(s: SetSize, replicas: int, surge: int, status_replicas: int) -> int:
    """How much this set would grow (negative: shrink) to keep its share of the new allowed total."""
    if replicas == 0:
        return -s.replicas
    allowed = replicas + surge
    annotated = s.max_replicas if s.max_replicas else status_replicas
    if annotated <= 0:
        return 0
    # round(replicas * allowed / annotated), half up, in integers (no float error at .5)
    return (2 * s.replicas * allowed + annotated) // (2 * annotated) - s.replicas


def proportional_sizes(sets: Sequence[SetSize], replicas: int, surge: int, status_replicas: int) -> dict[str, int]:
    """New sizes for the active ReplicaSets of a rolling Deployment resized to ``replicas`` mid-rollout;
    ``status_replicas`` stands in for a missing ``max-replicas`` annotation (as Kubernetes does)."""
    active = [s for s in sets if s.replicas > 0]
    allowed = replicas + surge if replicas > 0 else 0
    to_add = allowed - sum(s.replicas for s in active)
    if to_add > 0:
        ordered = sorted(active, key=lambda s: (-s.replicas, -s.created, s.name))
    else:
        ordered = sorted(active, key=lambda s: (-s.replicas, s.created, s.name))
    sizes = {s.name: s.replicas for s in ordered}
    if to_add == 0:
        return sizes
    added = 0
    for s in ordered:
        if added == to_add:
            break
        share = _fraction(s, replicas, surge, status_replicas)
        left = to_add - added
        share = min(share, left) if to_add > 0 else max(share, left)
        sizes[s.name] += share
        added += share
    first = ordered[0].name
    sizes[first] = max(0, sizes[first] + to_add - added)
    return sizes
