"""etcd leases for keys with a time to live, shared the way kube-apiserver shares them.

Granting one lease per key would put a lease (and its expiry bookkeeping) in etcd for every Event. Instead
a lease is granted for ``ttl + reuse`` seconds and handed to every key written with that TTL during the
next ``reuse`` seconds, so each key lives at least ``ttl`` and at most ``ttl + reuse`` seconds, and a
cluster writing Events continuously holds about ``(ttl + reuse) / reuse`` live leases.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

from controlplane.storage.client import EtcdClient

DEFAULT_REUSE_SECONDS = 60


@dataclass
class _Granted:
    lease_id: int
    expires_for_writes: float  # monotonic time after which new keys get a new lease


class LeaseManager:
    """Leases by TTL, reused for ``reuse_seconds`` (or a tenth of the TTL if that is shorter)."""

    def __init__(
        self,
        client: EtcdClient,
        *,
        reuse_seconds: float = DEFAULT_REUSE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client = client
        self.reuse_seconds = reuse_seconds
        self._clock = clock
        self._granted: dict[int, _Granted] = {}
        self._lock = asyncio.Lock()

    def _reuse_for(self, ttl: int) -> float:
        return min(self.reuse_seconds, ttl / 10)

    def forget(self, lease_id: int) -> None:
        """Stop handing out a lease etcd no longer has (it expired while this process was stalled)."""
        for ttl, granted in list(self._granted.items()):
            if granted.lease_id == lease_id:
                del self._granted[ttl]

    async def lease_for(self, ttl: int) -> int:
        """A lease ID that keeps a key written now alive for at least ``ttl`` seconds."""
        now = self._clock()
        current = self._granted.get(ttl)
        if current is not None and now < current.expires_for_writes:
            return current.lease_id
        async with self._lock:  # concurrent writers share one grant
            current = self._granted.get(ttl)
            if current is not None and self._clock() < current.expires_for_writes:
                return current.lease_id
            reuse = self._reuse_for(ttl)
            granted_ttl = int(ttl + reuse + 0.999)
            resp = await self.client.call(lambda t: self.client.lease.grant(granted_ttl, timeout=t), "grant a lease")
            self._granted[ttl] = _Granted(int(resp.ID), self._clock() + reuse)
            return int(resp.ID)
