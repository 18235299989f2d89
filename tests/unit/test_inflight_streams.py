"""The bounds on concurrent long-running calls, counted exactly (pure logic, no server)."""

from __future__ import annotations

import pytest

from controlplane.api.errors import TooManyRequestsError
from controlplane.apiserver.inflight import InflightStreams, StreamLimits


def test_each_user_is_bounded_separately_and_release_frees_a_slot() -> None:
    slots = InflightStreams(StreamLimits(watches_per_user=2, watches=0, log_streams_per_user=1))
    assert slots.acquire("Watch", "alice") and slots.acquire("Watch", "alice")
    with pytest.raises(
        TooManyRequestsError, match=r'user "alice" already has 2 open watches \(limit 2, --max-watches-per-user\)'
    ):
        slots.acquire("Watch", "alice")
    assert slots.acquire("Watch", "bob")  # another user is not affected
    slots.release("Watch", "alice")
    assert slots.acquire("Watch", "alice")
    # Log streams are bounded on their own.
    assert slots.acquire("PodLogs", "alice")
    with pytest.raises(TooManyRequestsError, match=r"open log streams \(limit 1, --max-log-streams-per-user\)"):
        slots.acquire("PodLogs", "alice")


def test_the_server_bound_applies_to_everyone_including_exempt_users() -> None:
    slots = InflightStreams(StreamLimits(watches_per_user=1, watches=3))
    assert slots.acquire("Watch", "admin", exempt_from_user_bound=True)
    assert slots.acquire("Watch", "admin", exempt_from_user_bound=True)  # over the per-user bound: exempt
    assert slots.acquire("Watch", "node-1")
    with pytest.raises(TooManyRequestsError, match=r"already serves 3 watches \(limit 3, --max-watches\)"):
        slots.acquire("Watch", "node-2")
    slots.release("Watch", "admin")
    assert slots.acquire("Watch", "node-2")
    assert slots.open("Watch") == 3 and slots.open("Watch", "admin") == 1


def test_exec_sessions_are_bounded_and_unbounded_methods_are_not_counted() -> None:
    slots = InflightStreams(StreamLimits(exec_sessions_per_user=1))
    assert slots.acquire("PodExec", "u")
    with pytest.raises(TooManyRequestsError, match=r"open exec sessions \(limit 1, --max-exec-sessions-per-user\)"):
        slots.acquire("PodExec", "u")
    assert slots.acquire("List", "u") is False  # nothing to release
    zero = InflightStreams(StreamLimits(watches_per_user=0, watches=0))
    for _ in range(5000):
        zero.acquire("Watch", "u")  # 0: no bound
