"""Restart arithmetic, pure: whether a finished container runs again, and after how long (CrashLoopBackOff).

Kubernetes' rules: ``Always`` restarts whatever the exit, ``OnFailure`` only after a failure, ``Never``
never; an init container that succeeded is done, and for init containers ``Always`` means ``OnFailure``.
The delay starts at ``initial`` and doubles after every restart up to ``cap``; an instance that ran for at
least ``reset_after`` seconds starts the sequence again.
"""

from __future__ import annotations

from dataclasses import dataclass


def effective_policy(pod_policy: str, *, init: bool) -> str:
    """The restart policy a container follows (init containers never restart after success)."""
    policy = pod_policy or "Always"
    return "OnFailure" if init and policy == "Always" else policy


def should_restart(policy: str, *, succeeded: bool, init: bool) -> bool:
    """Whether a container that ended (``succeeded``: exit code 0) is started again."""
    if init and succeeded:
        return False
    return policy == "Always" or (policy == "OnFailure" and not succeeded)


@dataclass(frozen=True)
class BackOff:
    """The CrashLoopBackOff schedule."""

    initial: float
    cap: float
    reset_after: float

    def delay(self, current: float, ran_for: float) -> float:
        """How long to wait before this restart, given the delay the sequence has reached and how long the
        instance ran."""
        return self.initial if ran_for >= self.reset_after else current

    def after(self, delay: float) -> float:
        """The delay the sequence reaches after waiting ``delay``."""
        return min(delay * 2, self.cap)
