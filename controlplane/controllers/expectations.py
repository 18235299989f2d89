"""Creations and deletions a controller asked for but has not yet seen in its informer cache.

Without them, a sync that runs before the cache shows the pods it just created would create them again
(client-go's ``ControllerExpectations``). A key is "satisfied" once every expected event was observed, or
when the expectations are older than a timeout (a lost watch event must not block a controller forever).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class _Pending:
    adds: int = 0
    deletes: set[str] = field(default_factory=set)
    since: float = 0.0


class Expectations:
    """Per controller key: how many creations and which deletions (by pod uid) are still unobserved."""

    def __init__(self, timeout: float = 300.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.timeout = timeout
        self._clock = clock
        self._pending: dict[str, _Pending] = {}

    def expect_creations(self, key: str, count: int) -> None:
        """The controller is about to create ``count`` objects for ``key``."""
        p = self._pending.setdefault(key, _Pending())
        p.adds += count
        p.since = self._clock()

    def expect_deletions(self, key: str, uids: list[str]) -> None:
        """The controller is about to delete these objects for ``key``."""
        p = self._pending.setdefault(key, _Pending())
        p.deletes.update(uids)
        p.since = self._clock()

    def creation_observed(self, key: str) -> None:
        """A creation arrived in the cache (or failed, so it never will)."""
        p = self._pending.get(key)
        if p is not None and p.adds > 0:
            p.adds -= 1

    def deletion_observed(self, key: str, uid: str) -> None:
        """A deletion arrived in the cache (or failed, so it never will)."""
        p = self._pending.get(key)
        if p is not None:
            p.deletes.discard(uid)

    def satisfied(self, key: str) -> bool:
        """Whether the cache has caught up with what was asked for (or waiting has timed out)."""
        p = self._pending.get(key)
        if p is None or (p.adds <= 0 and not p.deletes):
            return True
        return self._clock() - p.since > self.timeout

    def forget(self, key: str) -> None:
        """The controller's object is gone."""
        self._pending.pop(key, None)
