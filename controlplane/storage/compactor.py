"""Periodic etcd compaction, safe with any number of API servers and without leader election.

etcd keeps every revision until it is compacted; Lease renewals and node status writes alone would fill its
quota in days. Each API server runs a ``Compactor``. On every tick it tries one transaction on
``COMPACT_KEY``: "if the key's version is still the one I saw last tick, record the current revision". Only
one server's transaction can succeed per tick (the put changes the version); that server then compacts to
the revision recorded on the *previous* tick, so at least one interval of history is always kept for watches
and paged lists. The others learn the new version and try again next tick. The first success only records a
revision: nothing is compacted on start-up.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass

import grpc.aio

from controlplane.api.errors import ApiError, GoneError
from controlplane.storage.client import EtcdClient

log = logging.getLogger(__name__)

COMPACT_KEY = "/registry/compact_rev_key"
DEFAULT_INTERVAL = 300.0


@dataclass(frozen=True)
class CompactionTick:
    """What one tick did."""

    won: bool
    """This server's transaction recorded the revision (so it is the one that compacts this tick)."""
    compacted_to: int
    """The revision compacted to (0: nothing compacted)."""
    revision: int
    """etcd's revision at the tick (compacted to on the next successful tick)."""


class Compactor:
    """Compacts etcd every ``interval`` seconds, keeping the last interval's history."""

    def __init__(self, client: EtcdClient, interval: float = DEFAULT_INTERVAL) -> None:
        self.client = client
        self.interval = interval
        self._version = 0  # the compaction key's version this server last saw
        self._recorded = 0  # the revision recorded by the last successful tick (the next compaction target)
        self.compactions = 0

    async def tick(self) -> CompactionTick:
        """One attempt: record the current revision if no other server did since our last look, and then
        compact to the revision recorded the time before."""
        kv = self.client.kv
        resp = await self.client.call(
            lambda t: kv.txn(
                compare=[kv.txn_compare_version(COMPACT_KEY, self._version)],
                success=[kv.txn_op_put(COMPACT_KEY, b"")],  # the value is unused: the version is the clock
                failure=[kv.txn_op_get(COMPACT_KEY)],
                timeout=t,
            ),
            "record the compaction revision",
        )
        revision = int(resp.header.revision)
        if not resp.succeeded:
            kvs = resp.responses[0].response_range.kvs
            self._version = int(kvs[0].version) if kvs else 0
            self._recorded = 0  # another server compacts; our old target is not ours to use
            return CompactionTick(False, 0, revision)
        self._version += 1
        target, self._recorded = self._recorded, revision
        if not target:
            return CompactionTick(True, 0, revision)
        # GoneError: someone (an operator, etcd's own auto-compaction) compacted further already.
        with contextlib.suppress(GoneError):
            await self.client.call(lambda t: kv.compact(target, physical=False, timeout=t), f"compact to {target}")
        self.compactions += 1
        log.info("compacted etcd to revision %d", target)
        return CompactionTick(True, target, revision)

    async def run(self) -> None:
        """Tick every ``interval`` seconds until cancelled; failures are logged and retried next tick."""
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.tick()
            except ApiError as err:
                log.warning("etcd compaction skipped: %s", err.message)
            except grpc.aio.AioRpcError as err:
                log.warning("etcd compaction skipped: %s: %s", err.code().name, err.details())
