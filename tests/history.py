"""Observed histories: every watch event of some kinds in a namespace, in etcd's order, recorded from before a
test acts until it stops. Ordering assertions (an owner outlives its dependents, a Job is Complete before it
is deleted) read what happened instead of inferring it from a later state."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

from google.protobuf.message import Message

from controlplane.api import kinds
from controlplane.api.objects import meta
from controlplane.client.client import ApiClient


@dataclass(frozen=True)
class Seen:
    """One event as recorded."""

    revision: int
    """etcd's revision of the change: one order across kinds."""
    at: float
    """``time.time()`` when the recorder received it."""
    type: str
    kind: str
    name: str
    object: Message


class EventHistory:
    """Records ADDED/MODIFIED/DELETED of ``kinds`` in ``namespace`` from the moment ``recording()`` starts."""

    def __init__(self, client: ApiClient, kind_names: Sequence[str], namespace: str) -> None:
        self.client = client
        self.kinds = list(kind_names)
        self.namespace = namespace
        self.events: list[Seen] = []

    async def _follow(self, kind: str, resource_version: str) -> None:
        async for ev in self.client.watch(
            kind, self.namespace, resource_version=resource_version, allow_bookmarks=False
        ):
            self.events.append(
                Seen(
                    int(ev.resource_version or meta(ev.object).resource_version),
                    time.time(),
                    ev.type,
                    kind,
                    meta(ev.object).name,
                    ev.object,
                )
            )

    @contextlib.asynccontextmanager
    async def recording(self) -> AsyncIterator[EventHistory]:
        """Watch every kind from its current resourceVersion (so nothing between start and the first event
        is missed) until the block ends."""
        tasks = []
        for kind in self.kinds:
            listed = await self.client.list(kinds.lookup(kind).kind, self.namespace)
            tasks.append(asyncio.create_task(self._follow(kind, listed.resource_version), name=f"history-{kind}"))
        try:
            yield self
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    def ordered(self) -> list[Seen]:
        """The events in etcd's order (the streams of different kinds interleave by revision)."""
        return sorted(self.events, key=lambda s: s.revision)

    def first(self, kind: str, type_: str, name: str = "") -> Seen | None:
        """The first event of a kind and type (and name)."""
        return next(
            (s for s in self.ordered() if s.kind == kind and s.type == type_ and (not name or s.name == name)), None
        )
