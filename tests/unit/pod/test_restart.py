"""Restart arithmetic (nodeagent/pod/restart.py), pure: Kubernetes' restart policies, init containers, and
the CrashLoopBackOff schedule (plausible bugs: Always treated as OnFailure for main containers; an init
container that succeeded run again; the delay never reset after a long run, or doubled past its cap)."""

from __future__ import annotations

import pytest

from nodeagent.pod.restart import BackOff, effective_policy, should_restart


@pytest.mark.parametrize(
    ("policy", "succeeded", "init", "expected"),
    [
        ("Always", True, False, True),
        ("Always", False, False, True),
        ("OnFailure", True, False, False),
        ("OnFailure", False, False, True),
        ("Never", False, False, False),
        ("Never", True, False, False),
        ("OnFailure", True, True, False),  # an init container that succeeded is done
        ("OnFailure", False, True, True),
        ("Never", False, True, False),
    ],
)
def test_restart_policy_table(policy: str, succeeded: bool, init: bool, expected: bool) -> None:
    assert should_restart(policy, succeeded=succeeded, init=init) is expected


def test_init_containers_treat_always_as_on_failure() -> None:
    assert effective_policy("Always", init=True) == "OnFailure"
    assert effective_policy("", init=True) == "OnFailure"
    assert effective_policy("", init=False) == "Always"
    assert effective_policy("Never", init=True) == "Never"


def test_back_off_doubles_to_its_cap_and_resets_after_a_long_run() -> None:
    b = BackOff(initial=10, cap=300, reset_after=600)
    delay, waited = b.initial, []
    for _ in range(7):
        now = b.delay(delay, ran_for=1)
        waited.append(now)
        delay = b.after(now)
    assert waited == [10, 20, 40, 80, 160, 300, 300]
    assert b.delay(delay, ran_for=600) == 10, "a run of reset_after seconds starts the sequence again"
    assert b.delay(delay, ran_for=599.9) == 300
