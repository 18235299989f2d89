"""Proportional scaling of a Deployment resized mid-rollout (the arithmetic of Kubernetes' deployment_util)."""

from __future__ import annotations

from controlplane.controllers.deploymentutil import SetSize, is_scaling_event, proportional_sizes


def sizes(*sets: tuple[str, int, float], annotated: int) -> list[SetSize]:
    return [SetSize(name, replicas, created, max_replicas=annotated, desired=10) for name, replicas, created in sets]


def test_a_resize_is_detected_from_the_remembered_size() -> None:
    sets = sizes(("old", 8, 1), ("new", 5, 2), annotated=13)
    assert not is_scaling_event(sets, 10)
    assert is_scaling_event(sets, 20)
    assert not is_scaling_event([SetSize("idle", 0, 1, desired=3)], 20)  # a set with no pods does not count


def test_growing_mid_rollout_keeps_each_sets_share() -> None:
    # 10 replicas with maxSurge 3: old 8 + new 5 = 13 allowed. Resized to 20 with maxSurge 5: 25 allowed.
    out = proportional_sizes(sizes(("old", 8, 1), ("new", 5, 2), annotated=13), 20, 5, 13)
    assert out == {"old": 15, "new": 10}  # 8·25/13 = 15.4 → 15; 5·25/13 = 9.6 → 10
    assert sum(out.values()) == 25


def test_shrinking_mid_rollout_keeps_each_sets_share() -> None:
    out = proportional_sizes(sizes(("old", 8, 1), ("new", 5, 2), annotated=13), 5, 2, 13)
    assert out == {"old": 4, "new": 3} and sum(out.values()) == 7


def test_rounding_leftovers_go_to_the_largest_set_newest_first_when_growing() -> None:
    out = proportional_sizes(sizes(("a", 1, 1), ("b", 1, 2), ("c", 1, 3), annotated=3), 4, 0, 3)
    assert out == {"a": 1, "b": 1, "c": 2}  # each share rounds to 0; the one left goes to the newest


def test_rounding_leftovers_are_taken_from_the_largest_set_oldest_first_when_shrinking() -> None:
    out = proportional_sizes(sizes(("a", 1, 1), ("b", 1, 2), ("c", 1, 3), annotated=3), 2, 0, 3)
    assert out == {"a": 0, "b": 1, "c": 1}


def test_scaling_to_zero_empties_every_set_and_surge_does_not_apply() -> None:
    out = proportional_sizes(sizes(("old", 8, 1), ("new", 5, 2), annotated=13), 0, 3, 13)
    assert out == {"old": 0, "new": 0}


def test_a_missing_annotation_falls_back_to_the_pods_that_exist() -> None:
    sets = [SetSize("old", 6, 1), SetSize("new", 4, 2)]
    out = proportional_sizes(sets, 20, 0, 10)
    assert out == {"old": 12, "new": 8}
