"""When a pod must leave a NoExecute-tainted node, from its tolerations."""

from __future__ import annotations

from typing import Any

import pytest

from controlplane.api.pb import core_pb2
from controlplane.api.ratelimit import TokenBucket
from controlplane.controllers.tainteviction import eviction_delay

T0 = 1_000_000.0


def taint(key: str = "node.navarch.io/unreachable", effect: str = "NoExecute", added: float = T0) -> core_pb2.Taint:
    t = core_pb2.Taint(key=key, effect=effect)
    t.time_added.seconds = int(added)
    return t


def pod(*tolerations: dict[str, Any]) -> core_pb2.Pod:
    p = core_pb2.Pod()
    for tol in tolerations:
        p.spec.tolerations.add(**tol)
    return p


UNREACHABLE = {"key": "node.navarch.io/unreachable", "operator": "Exists", "effect": "NoExecute"}


@pytest.mark.parametrize(
    ("the_pod", "taints", "now", "expected"),
    [
        pytest.param(pod(), [taint()], T0, 0.0, id="no-toleration-evicted-now"),
        pytest.param(pod(UNREACHABLE), [taint()], T0 + 999, None, id="toleration-without-seconds-stays"),
        pytest.param(pod({**UNREACHABLE, "toleration_seconds": 30}), [taint()], T0 + 10, 20.0, id="20s-left"),
        pytest.param(pod({**UNREACHABLE, "toleration_seconds": 30}), [taint()], T0 + 31, 0.0, id="expired"),
        pytest.param(pod(UNREACHABLE), [taint(), taint("other")], T0, 0.0, id="second-taint-untolerated"),
        pytest.param(pod(), [taint(effect="NoSchedule")], T0, None, id="noschedule-ignored"),
        pytest.param(
            pod({**UNREACHABLE, "toleration_seconds": 30}, {**UNREACHABLE, "toleration_seconds": 5}),
            [taint()],
            T0,
            5.0,
            id="shortest-of-matching",
        ),
        pytest.param(pod({"operator": "Exists"}), [taint(), taint("other")], T0, None, id="tolerate-everything"),
    ],
)
def test_eviction_delay(
    the_pod: core_pb2.Pod, taints: list[core_pb2.Taint], now: float, expected: float | None
) -> None:
    assert eviction_delay(the_pod, taints, now) == expected


def test_taint_rate_bucket_allows_one_then_waits_for_the_rate() -> None:
    bucket = TokenBucket(0.1, tokens=1.0, at=0.0)
    assert bucket.take(0.0) == 0.0
    assert bucket.take(1.0) == pytest.approx(9.0)
    assert bucket.take(10.0) == 0.0
    assert TokenBucket(0.0, tokens=0.0).take(5.0) == float("inf")
