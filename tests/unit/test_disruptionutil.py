"""PodDisruptionBudget arithmetic: which count a budget uses and how percentages round."""

from __future__ import annotations

from google.protobuf import struct_pb2

from controlplane.controllers.disruptionutil import budget, needs_scale


def n(v: int) -> struct_pb2.Value:
    return struct_pb2.Value(number_value=v)


def pct(v: str) -> struct_pb2.Value:
    return struct_pb2.Value(string_value=v)


def test_an_integer_min_available_counts_the_pods_that_exist() -> None:
    assert not needs_scale(n(2), None)
    b = budget(n(2), None, selected=3, scale=99, healthy=3)
    assert (b.expected, b.desired, b.allowed) == (3, 2, 1)
    assert budget(n(5), None, selected=3, scale=0, healthy=3).allowed == 0  # never negative


def test_percentages_and_max_unavailable_count_against_the_controllers_size() -> None:
    assert needs_scale(pct("50%"), None) and needs_scale(None, n(1))
    b = budget(pct("50%"), None, selected=2, scale=5, healthy=4)
    assert (b.expected, b.desired, b.allowed) == (5, 3, 1)  # 2.5 rounds up to 3
    b = budget(None, pct("30%"), selected=10, scale=10, healthy=10)
    assert (b.desired, b.allowed) == (7, 3)  # 3 unavailable allowed
    b = budget(None, n(1), selected=3, scale=4, healthy=3)  # one pod not created yet is already missing
    assert (b.desired, b.allowed) == (3, 0)


def test_a_budget_without_numbers_allows_every_healthy_pod_to_go() -> None:
    assert budget(None, None, selected=3, scale=0, healthy=2).allowed == 2
