"""A token bucket: the one rate limiter every component uses (per-user request limits, eviction rates, events)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class TokenBucket:
    """``burst`` tokens, refilled at ``rate`` per second; ``take`` never waits. Rate 0 refills nothing (the
    burst is all there is). The caller passes the time (a monotonic clock), so the arithmetic is testable."""

    rate: float
    burst: float = 1.0
    tokens: float = -1.0
    """Tokens left (negative: not yet used, starts full)."""
    at: float = 0.0
    """When ``tokens`` was last brought up to date."""

    def take(self, now: float) -> float:
        """0 if a token was taken, else seconds until one will be available (inf for rate 0)."""
        if self.tokens < 0:
            self.tokens = self.burst
        elif self.rate > 0:
            self.tokens = min(self.burst, self.tokens + max(0.0, now - self.at) * self.rate)
        self.at = max(self.at, now)
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        return (1.0 - self.tokens) / self.rate if self.rate > 0 else float("inf")
