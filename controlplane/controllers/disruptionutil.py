"""PodDisruptionBudget arithmetic, as pure functions (Kubernetes' disruption controller's rules).

- ``minAvailable: N`` counts the pods the budget selects (expected = how many exist), desired = N;
- ``minAvailable: P%`` and ``maxUnavailable`` (number or percentage) count against the size the pods'
  controllers ask for (expected = the sum of their replicas), so a pod that has not been created yet is
  already counted as missing; percentages round up (desired = ⌈P% · expected⌉, unavailable =
  ⌈P% · expected⌉ → desired = expected - unavailable);
- allowed disruptions = healthy - desired, never negative; a pod is healthy when Ready, not being deleted and
  not evicted a moment ago (``disruptedPods``).
"""

from __future__ import annotations

from dataclasses import dataclass

from google.protobuf import struct_pb2

from controlplane.controllers.intstr import scaled_value

DISRUPTED_POD_TIMEOUT = 120.0
"""Seconds an evicted pod stays in ``disruptedPods`` waiting for its deletion to be seen (Kubernetes: 2 min)."""


@dataclass(frozen=True)
class Budget:
    """The numbers a budget's status carries."""

    expected: int
    desired: int
    healthy: int

    @property
    def allowed(self) -> int:
        return max(0, self.healthy - self.desired)


def needs_scale(min_available: struct_pb2.Value | None, max_unavailable: struct_pb2.Value | None) -> bool:
    """Whether the budget counts against the controllers' sizes (a percentage, or maxUnavailable)."""
    if max_unavailable is not None:
        return True
    return min_available is not None and min_available.WhichOneof("kind") == "string_value"


def budget(
    min_available: struct_pb2.Value | None,
    max_unavailable: struct_pb2.Value | None,
    selected: int,
    scale: int,
    healthy: int,
) -> Budget:
    """The budget's expected and desired pods; ``scale`` is used only when :func:`needs_scale`."""
    if max_unavailable is not None:
        unavailable = scaled_value(max_unavailable, scale, round_up=True)
        return Budget(scale, max(0, scale - unavailable), healthy)
    if min_available is not None:
        if min_available.WhichOneof("kind") == "string_value":
            return Budget(scale, scaled_value(min_available, scale, round_up=True), healthy)
        return Budget(selected, scaled_value(min_available, selected, round_up=True), healthy)
    return Budget(selected, 0, healthy)
