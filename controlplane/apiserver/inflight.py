"""Bounds on long-running calls: concurrent watches, log streams and exec sessions, per user and per server.

A watch costs the API server memory (a queue of up to ``--watcher-queue`` events) and a share of every
event's dispatch; log streams and exec sessions each hold a connection to an agent. Without a bound, one
careless client (or one compromised node) could open them until the server runs out of memory. A call over
a bound is refused with RESOURCE_EXHAUSTED naming the bound and its flag; nothing is queued.
"""

from __future__ import annotations

from dataclasses import dataclass

from controlplane.api.errors import TooManyRequestsError


@dataclass(frozen=True)
class StreamLimits:
    """How many long-running calls may be open at once (0: no bound)."""

    watches_per_user: int = 1_000
    watches: int = 50_000
    log_streams_per_user: int = 100
    exec_sessions_per_user: int = 20
    port_forwards_per_user: int = 100


@dataclass(frozen=True)
class _Bound:
    noun: str
    per_user: int
    per_user_flag: str
    total: int = 0
    total_flag: str = ""


class InflightStreams:
    """Counts of open long-running calls by method and by (method, user); not thread-safe (one event loop)."""

    def __init__(self, limits: StreamLimits | None = None) -> None:
        self.limits = limits or StreamLimits()
        lim = self.limits
        self._bounds = {
            "Watch": _Bound("watches", lim.watches_per_user, "--max-watches-per-user", lim.watches, "--max-watches"),
            "PodLogs": _Bound("log streams", lim.log_streams_per_user, "--max-log-streams-per-user"),
            "PodExec": _Bound("exec sessions", lim.exec_sessions_per_user, "--max-exec-sessions-per-user"),
            "PodPortForward": _Bound(
                "port-forward connections", lim.port_forwards_per_user, "--max-port-forwards-per-user"
            ),
        }
        self._total: dict[str, int] = {}
        self._per_user: dict[tuple[str, str], int] = {}

    def acquire(self, method: str, user: str, *, exempt_from_user_bound: bool = False) -> bool:
        """Count one more open call of ``method`` (its last path element) by ``user``; False when the method
        is not bounded (nothing to release). Raises ``TooManyRequestsError`` over a bound."""
        bound = self._bounds.get(method)
        if bound is None:
            return False
        total = self._total.get(method, 0)
        if bound.total and total >= bound.total:
            raise TooManyRequestsError(
                f"this API server already serves {total} {bound.noun} (limit {bound.total}, {bound.total_flag}); "
                "retry later or against another API server"
            )
        mine = self._per_user.get((method, user), 0)
        if bound.per_user and not exempt_from_user_bound and mine >= bound.per_user:
            raise TooManyRequestsError(
                f'user "{user}" already has {mine} open {bound.noun} (limit {bound.per_user}, '
                f"{bound.per_user_flag}); close some first"
            )
        self._total[method] = total + 1
        self._per_user[(method, user)] = mine + 1
        return True

    def release(self, method: str, user: str) -> None:
        """Count one call of ``method`` by ``user`` as closed."""
        self._total[method] = self._total.get(method, 1) - 1
        left = self._per_user.get((method, user), 1) - 1
        if left > 0:
            self._per_user[(method, user)] = left
        else:
            self._per_user.pop((method, user), None)

    def open(self, method: str, user: str = "") -> int:
        """How many calls of ``method`` are open (by ``user``, if given)."""
        return self._per_user.get((method, user), 0) if user else self._total.get(method, 0)
