"""Informers: list, then watch from the list's resourceVersion, into a local indexed cache.

::

    run():  list ──> replace(cache)  (diff: add / update / delete handlers; no phantom adds, no lost deletes)
              │
              └─> watch(rv) ──> ADDED/MODIFIED/DELETED ──> cache + handlers;  BOOKMARK ──> rv
                    │  stream broken / server gone ──> back-off, watch again from rv
                    └─ OUT_OF_RANGE ──────────────────> list again

Handlers run in the informer's task and must be quick (compute a key and enqueue it). Events older
than what the cache holds (a replay after reconnecting) are dropped, so no handler sees a change twice.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from google.protobuf.message import Message

from controlplane.api import kinds
from controlplane.api.errors import ApiError, GoneError
from controlplane.api.objects import meta
from controlplane.client.client import ApiClient
from controlplane.client.indexer import Indexer, IndexFunc, object_key

log = logging.getLogger(__name__)

T = TypeVar("T", bound=Message)


@dataclass(frozen=True)
class EventHandler(Generic[T]):
    """Callbacks for cache changes; any may be None."""

    on_add: Callable[[T], None] | None = None
    on_update: Callable[[T, T], None] | None = None
    on_delete: Callable[[T], None] | None = None


def _rv(obj: Message) -> int:
    text = meta(obj).resource_version
    return int(text) if text.isdigit() else 0


class Informer(Generic[T]):
    """A cache of one kind (optionally one namespace, or a selection) kept current by list + watch."""

    def __init__(
        self,
        client: ApiClient,
        kind: type[T],
        *,
        namespace: str = "",
        label_selector: str = "",
        field_selector: str = "",
        resync_period: float | None = None,
        indexers: dict[str, IndexFunc] | None = None,
        max_backoff: float = 5.0,
    ) -> None:
        self.client = client
        self.kind = kind
        self.info = kinds.of_message(kind())
        self.namespace = namespace
        self.label_selector = label_selector
        self.field_selector = field_selector
        self.resync_period = resync_period
        self.max_backoff = max_backoff
        self.store: Indexer[T] = Indexer(indexers)
        self.resource_version = ""
        self._handlers: list[EventHandler[T]] = []
        self._synced = asyncio.Event()
        self.relists = 0
        """How many times the informer listed (1 + relists after OUT_OF_RANGE)."""

    def add_event_handler(
        self,
        on_add: Callable[[T], None] | None = None,
        on_update: Callable[[T, T], None] | None = None,
        on_delete: Callable[[T], None] | None = None,
    ) -> None:
        """Register callbacks; a handler added after sync is sent ADD for every cached object."""
        handler = EventHandler(on_add, on_update, on_delete)
        self._handlers.append(handler)
        if self._synced.is_set() and on_add is not None:
            for obj in self.store.objects():
                self._safe(on_add, obj)

    def has_synced(self) -> bool:
        """True once the first list is in the cache."""
        return self._synced.is_set()

    async def wait_for_sync(self, timeout: float = 30.0) -> None:
        """Wait until the first list is in the cache; ``TimeoutError`` otherwise."""
        await asyncio.wait_for(self._synced.wait(), timeout)

    # ------------------------------------------------------------ dispatch

    @staticmethod
    def _safe(fn: Callable[..., None], *args: object) -> None:
        try:
            fn(*args)
        except Exception:
            log.exception("event handler %s failed", getattr(fn, "__qualname__", fn))

    def _added(self, obj: T) -> None:
        for h in self._handlers:
            if h.on_add is not None:
                self._safe(h.on_add, obj)

    def _updated(self, old: T, new: T) -> None:
        for h in self._handlers:
            if h.on_update is not None:
                self._safe(h.on_update, old, new)

    def _deleted(self, obj: T) -> None:
        for h in self._handlers:
            if h.on_delete is not None:
                self._safe(h.on_delete, obj)

    def _replace(self, items: list[T]) -> None:
        """Make the cache equal to a fresh list, telling handlers what changed since the last state."""
        fresh = {object_key(o): o for o in items}
        for key in list(self.store.keys()):
            if key not in fresh:
                gone = self.store.remove(key)
                if gone is not None:
                    self._deleted(gone)
        for key, obj in fresh.items():
            old = self.store.get(key)
            if old is None:
                self.store.put(obj)
                self._added(obj)
            elif meta(old).uid != meta(obj).uid:
                # Deleted and re-created while we were not watching: tell both halves.
                self.store.remove(key)
                self._deleted(old)
                self.store.put(obj)
                self._added(obj)
            elif _rv(obj) != _rv(old):
                self.store.put(obj)
                self._updated(old, obj)

    def _apply(self, event_type: str, obj: T) -> None:
        key = object_key(obj)
        old = self.store.get(key)
        if event_type == "DELETED":
            if old is not None and _rv(obj) >= _rv(old):
                self.store.remove(key)
                self._deleted(old if meta(old).uid == meta(obj).uid else obj)
            return
        if old is None:
            self.store.put(obj)
            self._added(obj)
        elif _rv(obj) > _rv(old):
            self.store.put(obj)
            self._updated(old, obj)

    # ----------------------------------------------------------------- run

    async def _list(self) -> None:
        result = await self.client.list(
            self.kind, self.namespace, label_selector=self.label_selector, field_selector=self.field_selector
        )
        self._replace(result.items)
        self.resource_version = result.resource_version
        self.relists += 1
        self._synced.set()

    async def _watch(self) -> None:
        async for ev in self.client.watch(
            self.kind,
            self.namespace,
            resource_version=self.resource_version,
            label_selector=self.label_selector,
            field_selector=self.field_selector,
        ):
            if ev.type == "BOOKMARK":
                self.resource_version = ev.resource_version
                continue
            self._apply(ev.type, ev.object)
            # One revision may carry several objects (a BindPods transaction): until a later revision shows
            # it complete, resume from the one before, and let ``_apply`` skip what is seen again.
            rv = ev.resource_version
            self.resource_version = str(int(rv) - 1) if rv.isdigit() and int(rv) > 1 else rv

    async def run(self) -> None:
        """Keep the cache current until cancelled."""
        resync: asyncio.Task[None] | None = None
        if self.resync_period:
            resync = asyncio.create_task(self._resync_loop(), name=f"resync-{self.info.plural}")
        need_list = True
        delay = 0.05
        try:
            while True:
                try:
                    if need_list:
                        await self._list()
                        need_list = False
                    await self._watch()
                    delay = 0.05  # the server ended the stream cleanly: watch again at once
                    continue
                except GoneError:
                    log.info(
                        "informer %s: resourceVersion %s is gone; listing again",
                        self.info.plural,
                        self.resource_version,
                    )
                    need_list = True
                    continue
                except ApiError as err:
                    log.warning("informer %s: %s; retrying in %.2fs", self.info.plural, err.message, delay)
                await asyncio.sleep(delay * (0.5 + random.random()))
                delay = min(delay * 2, self.max_backoff)
        finally:
            if resync is not None:
                resync.cancel()

    async def _resync_loop(self) -> None:
        assert self.resync_period is not None
        while True:
            await asyncio.sleep(self.resync_period)
            if self._synced.is_set():
                for obj in self.store.objects():
                    self._updated(obj, obj)


class InformerFactory:
    """Shares one informer per (kind, selection) among every controller of a process, and owns their tasks."""

    def __init__(self, client: ApiClient, *, namespace: str = "", resync_period: float | None = None) -> None:
        self.client = client
        self.namespace = namespace
        self.resync_period = resync_period
        self._informers: dict[tuple[str, str, str], Informer[Message]] = {}
        self._tasks: list[asyncio.Task[None]] = []

    def informer(self, kind: type[T], *, label_selector: str = "", field_selector: str = "") -> Informer[T]:
        """The shared informer of a kind (created on first use)."""
        key = (kinds.of_message(kind()).kind, label_selector, field_selector)
        if key not in self._informers:
            inf: Informer[T] = Informer(
                self.client,
                kind,
                namespace=self.namespace,
                label_selector=label_selector,
                field_selector=field_selector,
                resync_period=self.resync_period,
            )
            self._informers[key] = inf  # type: ignore[assignment]
            if self._tasks:  # already started: start the newcomer too
                self._tasks.append(asyncio.create_task(inf.run(), name=f"informer-{inf.info.plural}"))
        return self._informers[key]  # type: ignore[return-value]

    def start(self) -> None:
        """Start every informer created so far (later ones start on creation)."""
        for inf in self._informers.values():
            self._tasks.append(asyncio.create_task(inf.run(), name=f"informer-{inf.info.plural}"))

    async def wait_for_sync(self, timeout: float = 30.0) -> None:
        """Wait until every informer has listed."""
        async with asyncio.timeout(timeout):
            for inf in self._informers.values():
                await inf.wait_for_sync(timeout)

    async def stop(self) -> None:
        """Cancel every informer task."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
