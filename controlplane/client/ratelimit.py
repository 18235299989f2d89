"""Rate limiters for the work queue, with Kubernetes' defaults.

- ``ItemExponentialBackoff``: per item, 5 ms doubling to 1000 s.
- ``TokenBucket``: overall, 10 per second with bursts of 100.
- ``MaxOf``: the longest delay any of them asks for (client-go's DefaultControllerRateLimiter).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable
from typing import Protocol


class RateLimiter(Protocol):
    """How long an item must wait before it is processed again."""

    def when(self, item: Hashable) -> float:
        """Seconds to wait; counts a failure of the item."""
        ...

    def forget(self, item: Hashable) -> None:
        """The item succeeded: clear its failure count."""
        ...

    def num_requeues(self, item: Hashable) -> int:
        """Failures counted for the item."""
        ...


class ItemExponentialBackoff:
    """``base * 2**failures`` seconds, at most ``cap``."""

    def __init__(self, base: float = 0.005, cap: float = 1000.0) -> None:
        self.base = base
        self.cap = cap
        self._failures: dict[Hashable, int] = {}

    def when(self, item: Hashable) -> float:
        exp = self._failures.get(item, 0)
        self._failures[item] = exp + 1
        if exp > 64:  # 2**64 * base is far beyond any cap
            return self.cap
        return float(min(self.base * (2**exp), self.cap))

    def forget(self, item: Hashable) -> None:
        self._failures.pop(item, None)

    def num_requeues(self, item: Hashable) -> int:
        return self._failures.get(item, 0)


class TokenBucket:
    """An overall limit of ``rate`` items per second, with bursts of ``burst``."""

    def __init__(self, rate: float = 10.0, burst: int = 100, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._tokens = float(burst)
        self._last = clock()

    def when(self, item: Hashable) -> float:
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
        self._last = now
        self._tokens -= 1  # reserve a token now, even if it is only available later
        return 0.0 if self._tokens >= 0 else -self._tokens / self.rate

    def forget(self, item: Hashable) -> None:
        return None

    def num_requeues(self, item: Hashable) -> int:
        return 0


class MaxOf:
    """The longest delay of several limiters."""

    def __init__(self, *limiters: RateLimiter) -> None:
        self.limiters = limiters

    def when(self, item: Hashable) -> float:
        return max(limiter.when(item) for limiter in self.limiters)

    def forget(self, item: Hashable) -> None:
        for limiter in self.limiters:
            limiter.forget(item)

    def num_requeues(self, item: Hashable) -> int:
        return max(limiter.num_requeues(item) for limiter in self.limiters)


def default_controller_rate_limiter() -> RateLimiter:
    """Kubernetes' default: per-item 5 ms -> 1000 s back-off, and 10 qps / 100 burst overall."""
    return MaxOf(ItemExponentialBackoff(0.005, 1000.0), TokenBucket(10.0, 100))
