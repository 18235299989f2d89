"""The autoscaler's arithmetic against hand-worked Kubernetes examples."""

from __future__ import annotations

import pytest

from controlplane.controllers.podautoscalerutil import (
    DEFAULT_SCALE_UP,
    MissingRequest,
    PodSample,
    Policy,
    Recommendation,
    Rules,
    ScaleEvent,
    average_value_proposal,
    decide,
    default_scale_down,
    scale_down_limit,
    scale_up_limit,
    stabilize,
    utilization_proposal,
)

pytestmark = pytest.mark.unit


def test_utilization_scales_by_the_usage_ratio() -> None:
    # Two pods requesting 0.5 core each, using 0.9 each: 180 % of requests against a 50 % target.
    samples = [PodSample(0.9, 0.5), PodSample(0.9, 0.5)]
    proposal = utilization_proposal(2, samples, 50)
    assert proposal.current == pytest.approx(180.0)
    assert proposal.replicas == 8  # ceil(3.6 * 2)


def test_within_the_tolerance_nothing_changes() -> None:
    samples = [PodSample(0.27, 0.5), PodSample(0.27, 0.5)]  # 54 %: within 10 % of 50 %
    assert utilization_proposal(2, samples, 50).replicas == 2
    assert utilization_proposal(2, [PodSample(0.3, 0.5)] * 2, 50).replicas == 3  # 60 %: ceil(1.2 * 2)


def test_utilization_needs_requests() -> None:
    with pytest.raises(MissingRequest):
        utilization_proposal(1, [PodSample(0.5, 0.0)], 50)


def test_average_value_divides_the_total_by_the_target() -> None:
    mib = 1024 * 1024
    samples = [PodSample(300 * mib, 0), PodSample(300 * mib, 0)]
    assert average_value_proposal(2, samples, 200 * mib).replicas == 3
    assert average_value_proposal(2, samples, 290 * mib).replicas == 2  # within tolerance


def test_scale_down_keeps_the_highest_recommendation_of_its_window() -> None:
    down = default_scale_down(300)
    history = [Recommendation(0.0, 6), Recommendation(100.0, 4)]
    # At t=200 the metrics ask for 2, but 6 was recommended 200 s ago: stay at 6.
    assert stabilize(6, 2, history, 200.0, DEFAULT_SCALE_UP, down) == 6
    # At t=350 the 6 has left the window; 4 (t=100) is still in it.
    assert stabilize(6, 2, history, 350.0, DEFAULT_SCALE_UP, down) == 4
    # A scale-up is not held back by the scale-down window.
    assert stabilize(6, 9, history, 350.0, DEFAULT_SCALE_UP, down) == 9


def test_scale_up_window_takes_the_lowest_recommendation() -> None:
    up = Rules(60, "Max", DEFAULT_SCALE_UP.policies)
    history = [Recommendation(0.0, 3)]
    assert stabilize(2, 10, history, 30.0, up, default_scale_down()) == 3
    assert stabilize(2, 10, history, 90.0, up, default_scale_down()) == 10


def test_default_scale_up_allows_the_larger_of_doubling_and_four_pods_per_15_seconds() -> None:
    assert scale_up_limit(1, [], 0.0, DEFAULT_SCALE_UP) == 5  # +4 pods beats +100 %
    assert scale_up_limit(10, [], 0.0, DEFAULT_SCALE_UP) == 20  # +100 % beats +4 pods
    # 6 already added within the period: the period started at 4 replicas.
    assert scale_up_limit(10, [ScaleEvent(5.0, 6)], 10.0, DEFAULT_SCALE_UP) == 10
    assert scale_up_limit(10, [ScaleEvent(5.0, 6)], 30.0, DEFAULT_SCALE_UP) == 20


def test_select_policy_min_and_disabled() -> None:
    rules = Rules(0, "Min", (Policy("Pods", 1, 60), Policy("Percent", 50, 60)))
    assert scale_up_limit(10, [], 0.0, rules) == 11
    assert scale_up_limit(10, [], 0.0, Rules(0, "Disabled", rules.policies)) == 10
    down = Rules(0, "Max", (Policy("Pods", 2, 60), Policy("Percent", 50, 60)))
    assert scale_down_limit(10, [], 0.0, down) == 5
    # The period started at 15 (5 removed since): 50 % of 15 allows 7, two pods would allow 13.
    assert scale_down_limit(10, [ScaleEvent(1.0, -5)], 2.0, down) == 7
    pods_only = Rules(0, "Max", (Policy("Pods", 2, 60),))
    assert scale_down_limit(10, [ScaleEvent(1.0, -5)], 2.0, pods_only) == 10  # its allowance is spent


def test_decide_clamps_and_says_why() -> None:
    common = {"history": [], "events": [], "now": 0.0, "up": DEFAULT_SCALE_UP, "down": default_scale_down(0)}
    got = decide(2, 50, minimum=1, maximum=5, **common)  # type: ignore[arg-type]
    assert (got.replicas, got.limited) == (5, "TooManyReplicas")
    got = decide(2, 50, minimum=1, maximum=100, **common)  # type: ignore[arg-type]
    assert (got.replicas, got.limited) == (6, "ScaleUpLimit")
    got = decide(4, 0, minimum=2, maximum=10, **common)  # type: ignore[arg-type]
    assert (got.replicas, got.limited) == (2, "TooFewReplicas")
    got = decide(4, 3, minimum=1, maximum=10, **common)  # type: ignore[arg-type]
    assert (got.replicas, got.limited) == (3, "")
