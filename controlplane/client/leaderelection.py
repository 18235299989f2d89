"""Leader election over a ``Lease`` object, with Kubernetes' semantics and defaults.

::

    run():  acquire ──(every retry_period, jittered)──> holder = me   (update guarded by resourceVersion)
              │
              ├─ on_started_leading() runs as a task
              └─ renew every retry_period; no successful renew for renew_deadline
                   ──> cancel on_started_leading, on_stopped_leading(), return

Another candidate takes over only when the Lease has not changed for lease_duration as *it* observed
it (local monotonic time, so clocks need not agree). Since renew_deadline < lease_duration, a leader
that cannot renew stops leading before anyone else may start. Defaults: 15 s / 10 s / 2 s.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp

from controlplane.api.errors import AlreadyExistsError, ApiError, ConflictError, NotFoundError
from controlplane.api.pb import coordination_pb2
from controlplane.client.client import ApiClient

log = logging.getLogger(__name__)

Lease = coordination_pb2.Lease


@dataclass(frozen=True)
class LeaderElectionConfig:
    """Where and how to elect."""

    lease_namespace: str
    """Namespace of the Lease (usually navarch-system)."""
    lease_name: str
    """Name of the Lease, one per component (e.g. navarch-scheduler)."""
    identity: str
    """This candidate's unique identity (host name + process id)."""
    lease_duration: float = 15.0
    """Seconds a non-leader waits after the last observed change before taking over."""
    renew_deadline: float = 10.0
    """Seconds the leader keeps trying to renew before it gives up leading."""
    retry_period: float = 2.0
    """Seconds between attempts to acquire or renew."""
    release_on_cancel: bool = True
    """On a clean stop, hand the Lease back so another candidate takes over at once."""

    def __post_init__(self) -> None:
        if not 0 < self.retry_period < self.renew_deadline < self.lease_duration:
            raise ValueError("leader election needs 0 < retry_period < renew_deadline < lease_duration")


def _now() -> Timestamp:
    ts = Timestamp()
    ts.FromDatetime(datetime.now(UTC))
    return ts


class LeaderElector:
    """One candidate. ``run()`` returns once leadership, after being held, is lost (or never, while waiting)."""

    def __init__(
        self,
        client: ApiClient,
        config: LeaderElectionConfig,
        *,
        on_started_leading: Callable[[], Coroutine[Any, Any, None]],
        on_stopped_leading: Callable[[], None] | None = None,
        on_new_leader: Callable[[str], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client = client
        self.config = config
        self._on_started = on_started_leading
        self._on_stopped = on_stopped_leading
        self._on_new_leader = on_new_leader
        self._clock = clock
        self._observed: Lease | None = None
        self._observed_at = 0.0
        self._leading = False
        self.leader = ""
        """The identity of the current leader as last observed ("" if none)."""

    def is_leader(self) -> bool:
        """Whether this candidate holds the Lease right now."""
        return self._leading

    def _observe(self, lease: Lease) -> None:
        changed = self._observed is None or self._observed.spec != lease.spec
        if changed:
            self._observed_at = self._clock()
        self._observed = lease
        holder = lease.spec.holder_identity
        if holder != self.leader:
            self.leader = holder
            if self._on_new_leader is not None and holder:
                self._on_new_leader(holder)

    async def try_acquire_or_renew(self) -> bool:
        """One attempt to become or stay leader (Kubernetes' tryAcquireOrRenew)."""
        cfg = self.config
        now = _now()
        try:
            lease = await self.client.get(Lease, cfg.lease_name, cfg.lease_namespace, timeout=cfg.retry_period * 2)
        except NotFoundError:
            lease = Lease(api_version="coordination/v1", kind="Lease")
            lease.metadata.name, lease.metadata.namespace = cfg.lease_name, cfg.lease_namespace
            lease.spec.holder_identity = cfg.identity
            lease.spec.lease_duration_seconds = max(1, round(cfg.lease_duration))
            lease.spec.acquire_time.CopyFrom(now)
            lease.spec.renew_time.CopyFrom(now)
            lease.spec.lease_transitions = 0
            try:
                created = await self.client.create(lease, timeout=cfg.retry_period * 2)
            except AlreadyExistsError:
                return False
            self._observe(created)
            return True
        self._observe(lease)
        holder = lease.spec.holder_identity
        expired = self._clock() > self._observed_at + cfg.lease_duration
        if holder and holder != cfg.identity and not expired:
            return False
        new = Lease()
        new.CopyFrom(lease)
        if holder != cfg.identity:
            new.spec.acquire_time.CopyFrom(now)
            new.spec.lease_transitions = lease.spec.lease_transitions + 1
        new.spec.holder_identity = cfg.identity
        new.spec.lease_duration_seconds = max(1, round(cfg.lease_duration))
        new.spec.renew_time.CopyFrom(now)
        try:
            updated = await self.client.update(new, timeout=cfg.retry_period * 2)
        except ConflictError:
            return False  # someone else wrote first: look again next round
        self._observe(updated)
        return True

    def _jittered(self) -> float:
        return self.config.retry_period * (1.0 + 0.2 * random.random())

    async def _acquire(self) -> None:
        while True:
            try:
                if await self.try_acquire_or_renew():
                    return
            except ApiError as err:
                log.warning("leader election %s: %s", self.config.lease_name, err.message)
            await asyncio.sleep(self._jittered())

    async def _renew_until_lost(self) -> None:
        cfg = self.config
        last_renew = self._clock()
        while True:
            await asyncio.sleep(cfg.retry_period)
            deadline_left = last_renew + cfg.renew_deadline - self._clock()
            if deadline_left <= 0:
                return
            try:
                async with asyncio.timeout(deadline_left):
                    while not await self.try_acquire_or_renew():
                        if self.leader and self.leader != cfg.identity:
                            return  # someone else holds it: we lost it
                        await asyncio.sleep(
                            min(cfg.retry_period, max(0.01, last_renew + cfg.renew_deadline - self._clock()))
                        )
                last_renew = self._clock()
            except TimeoutError:
                return
            except ApiError as err:
                log.warning("leader election %s: renew failed: %s", cfg.lease_name, err.message)
                if self._clock() >= last_renew + cfg.renew_deadline:
                    return

    async def run(self) -> None:
        """Acquire, lead until the Lease cannot be renewed, then stop leading and return."""
        await self._acquire()
        self._leading = True
        log.info("leader election %s: %s started leading", self.config.lease_name, self.config.identity)
        leading = asyncio.create_task(self._on_started(), name=f"leading-{self.config.lease_name}")
        try:
            renew = asyncio.create_task(self._renew_until_lost(), name=f"renew-{self.config.lease_name}")
            try:
                await asyncio.wait({leading, renew}, return_when=asyncio.FIRST_COMPLETED)
            except asyncio.CancelledError:
                if self.config.release_on_cancel:
                    renew.cancel()
                    await self.release()
                raise
            finally:
                renew.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await renew
        finally:
            self._leading = False
            leading.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await leading
            log.info("leader election %s: %s stopped leading", self.config.lease_name, self.config.identity)
            if self._on_stopped is not None:
                self._on_stopped()

    async def release(self) -> None:
        """Hand the Lease back (holder emptied, duration 1 s) if this candidate holds it."""
        lease = self._observed
        if lease is None or lease.spec.holder_identity != self.config.identity:
            return
        new = Lease()
        new.CopyFrom(lease)
        new.spec.holder_identity = ""
        new.spec.lease_duration_seconds = 1
        new.spec.renew_time.CopyFrom(_now())
        with contextlib.suppress(ApiError):
            await self.client.update(new, timeout=self.config.retry_period * 2)
