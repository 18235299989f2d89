"""The watch cache: one etcd watch per kind, serving List and Watch from memory.

::

    etcd --list(rev R)--> objects, revision=R
         --watch(R+1)---> _apply(batch) --> objects, history (bounded window), revision
                                       \\--> every CacheWatcher.offer(event)  (bounded queue;
                                            full -> closed with RESOURCE_EXHAUSTED)
         compacted ------> relist; watchers closed with UNAVAILABLE (they resume from their rv)
         stream broken --> back-off, resume from revision+1 (no relist, no gap)

``revision`` only moves forward and means: every change to this kind up to
``revision`` is in ``objects``. Progress requests to etcd advance it when the
kind has no writes, so a List can prove it is current (``wait_fresh``) and
idle watchers get fresh bookmarks.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from google.protobuf.message import Message

from controlplane.api.errors import ApiError, GoneError, TooManyRequestsError, UnavailableError
from controlplane.api.kinds import KindInfo
from controlplane.api.objects import meta
from controlplane.api.selectors import FieldSelector, LabelSelector
from controlplane.apiserver.cacheindex import ObjectIndex
from controlplane.apiserver.watchindex import WatcherIndex
from controlplane.storage import EtcdWatch, Store, WatchBatch
from controlplane.storage.encryption import EncryptionError
from controlplane.storage.store import LIST_PAGE

log = logging.getLogger(__name__)

ADDED, MODIFIED, DELETED, BOOKMARK = "ADDED", "MODIFIED", "DELETED", "BOOKMARK"


@dataclass(frozen=True)
class CacheEvent:
    """A change as the cache saw it; for DELETED, ``obj`` is the last state with the deletion's revision.

    One event is offered to many watchers: its encoded form (``encoded``) and its retyped forms (an update
    seen as ADDED or DELETED through a selector, ``retyped``) are made once and shared by all of them."""

    type: str
    key: str
    obj: Message
    prev: Message | None
    revision: int
    _memo: dict[object, object] = field(default_factory=dict, compare=False, repr=False)

    def retyped(self, type_: str, *, keep_prev: bool = True) -> CacheEvent:
        """The same change under another type (shared by every watcher that sees it so)."""
        memo_key = ("retyped", type_, keep_prev)
        found = self._memo.get(memo_key)
        if found is None:
            found = CacheEvent(type_, self.key, self.obj, self.prev if keep_prev else None, self.revision)
            self._memo[memo_key] = found
        assert isinstance(found, CacheEvent)
        return found

    def encoded(self, encode: Callable[[CacheEvent], bytes]) -> bytes:
        """``encode(self)``, computed once for all the watchers that send this event."""
        found = self._memo.get("encoded")
        if found is None:
            found = self._memo["encoded"] = encode(self)
        assert isinstance(found, bytes)
        return found


@dataclass(frozen=True)
class Filter:
    """What a watcher or a list selects."""

    namespace: str = ""
    labels: LabelSelector = field(default_factory=LabelSelector)
    fields: FieldSelector = field(default_factory=FieldSelector)

    def matches(self, obj: Message) -> bool:
        """Whether the object is selected."""
        m = meta(obj)
        if self.namespace and m.namespace != self.namespace:
            return False
        return self.labels.matches(m.labels) and self.fields.matches(obj)

    def exact_field(self, field: str) -> str | None:
        """The value an ``field=value`` term requires, if any (for index lookups)."""
        return self.fields.exact(field)


class _CheckAbandoned(Exception):
    """A shared freshness check ended without an answer (its caller was cancelled)."""


class CacheWatcher:
    """One client's watch: replayed events first, then live events through a bounded queue."""

    def __init__(self, cache: WatchCache, flt: Filter, capacity: int, initial: Iterable[CacheEvent]) -> None:
        self._cache = cache
        self.filter = flt
        self._initial = collections.deque(initial)
        self._queue: asyncio.Queue[CacheEvent | None] = asyncio.Queue(maxsize=capacity)
        self.error: ApiError | None = None

    def offer(self, ev: CacheEvent) -> None:
        """Queue an event as this watcher sees it (selectors turn updates into ADDED/DELETED)."""
        if self.error is not None:
            return
        seen = self.transform(ev)
        if seen is None:
            return
        try:
            self._queue.put_nowait(seen)
        except asyncio.QueueFull:
            self.close(
                TooManyRequestsError(
                    f"watch of {self._cache.info.plural} closed: the client fell more than "
                    f"{self._queue.maxsize} events behind; watch again from the last resourceVersion it received"
                )
            )

    def transform(self, ev: CacheEvent) -> CacheEvent | None:
        """The event this watcher should see, or None."""
        if ev.type == DELETED:
            return ev if self.filter.matches(ev.obj) else None
        new_match = self.filter.matches(ev.obj)
        old_match = ev.prev is not None and self.filter.matches(ev.prev)
        if ev.type == ADDED or ev.prev is None:
            return ev.retyped(ADDED, keep_prev=False) if new_match else None
        if new_match and old_match:
            return ev
        if new_match:
            return ev.retyped(ADDED)
        if old_match:
            return ev.retyped(DELETED)
        return None

    def close(self, error: ApiError) -> None:
        """End the watch with an error the client will receive after events already queued for it."""
        if self.error is None:
            self.error = error
        self._cache.unregister(self)
        # A full queue means the consumer is not waiting: it sees `error` before its next read.
        with contextlib.suppress(asyncio.QueueFull):
            self._queue.put_nowait(None)

    async def next(self, timeout: float) -> CacheEvent | None:
        """The next event, or None when ``timeout`` passes first; raises the close error."""
        if self._initial:
            return self._initial.popleft()
        # A slow watcher is cut off at once; any other close delivers what was queued first.
        if self.error is not None and (self._queue.empty() or isinstance(self.error, TooManyRequestsError)):
            raise self.error
        try:
            ev = await asyncio.wait_for(self._queue.get(), timeout)
        except TimeoutError:
            return None
        if ev is None:
            assert self.error is not None
            raise self.error
        return ev


class WatchCache:
    """The in-memory state and recent history of one kind."""

    def __init__(
        self,
        store: Store,
        info: KindInfo,
        *,
        window: int = 10_000,
        window_bytes: int = 100 * 1024 * 1024,
        watcher_capacity: int = 1_000,
        progress_interval: float = 5.0,
    ) -> None:
        self.store = store
        self.info = info
        self.window = window
        self.window_bytes = window_bytes
        self._history_bytes = 0
        self.watcher_capacity = watcher_capacity
        self.progress_interval = progress_interval
        self.objects = ObjectIndex(info)
        self.undecryptable: set[str] = set()
        """Keys whose values no configured key decrypts: skipped (and logged), but counted as present when
        comparing with etcd's key count."""
        self.revision = 0
        self.event_revision = 0
        """The revision up to which the cache is proven by events or reads (progress notifications excluded)."""
        self._window_start = 0  # history holds every event with revision > _window_start
        self._history: collections.deque[CacheEvent] = collections.deque()
        self._watchers: WatcherIndex[CacheWatcher] = WatcherIndex(info)
        self._advanced = asyncio.Condition()
        self._watch: EtcdWatch | None = None
        self._progress_trusted_from = 0
        self.ready = asyncio.Event()
        self._arrivals = 0
        self.events_received = 0
        """Events applied since start (``apiserver_watch_cache_events_received_total``)."""
        self.events_dispatched = 0
        """Events offered to watchers, one per watcher (``apiserver_watch_cache_events_dispatched_total``)."""
        self._fresh: tuple[int, asyncio.Future[bool]] | None = None
        """The latest freshness check: (callers it answers for, its answer)."""

    # ------------------------------------------------------------ feeding

    async def run(self) -> None:
        """Keep the cache in sync with etcd until cancelled."""
        backoff = 0.1
        need_list = True
        me = asyncio.current_task()
        while True:
            if me is not None and me.cancelling():
                raise asyncio.CancelledError()  # a cancellation some library call swallowed: stop anyway
            try:
                if need_list:
                    await self._relist()
                    need_list = False
                self._watch = self.store.watch(self.info, self.revision + 1)
                # etcd before 3.5.8 may send a progress notification to a watch that is still catching up,
                # naming a revision whose events it has not delivered yet. Until this watch has delivered
                # everything up to the revision current at its start, progress notifications are ignored.
                current = await self.store.client.current_revision()
                self._progress_trusted_from = current if current > self.revision else 0
                if current > self.revision and await self.store.unchanged_between(
                    self.info, len(self.objects) + len(self.undecryptable), self.revision, current
                ):
                    # Nothing of this kind changed meanwhile (the usual case for a quiet kind): current at once.
                    self.revision = current
                    self.event_revision = current
                    self._progress_trusted_from = 0
                    await self._notify_advanced()
                async with asyncio.TaskGroup() as tg:
                    ticker = tg.create_task(self._request_progress(), name=f"progress-{self.info.plural}")
                    try:
                        async for batch in self._watch.stream():
                            self._apply(batch)
                            await self._notify_advanced()
                            backoff = 0.1
                    finally:
                        ticker.cancel()
            except* GoneError as group:
                log.warning("watch cache %s: %s; relisting", self.info.plural, group.exceptions[0])
                need_list = True
            except* UnavailableError as group:
                log.warning("watch cache %s: %s; retrying in %.1fs", self.info.plural, group.exceptions[0], backoff)
                await asyncio.sleep(backoff * (0.5 + random.random()))
                backoff = min(backoff * 2, 5.0)
            finally:
                self._watch = None

    async def _request_progress(self) -> None:
        while True:
            await asyncio.sleep(self.progress_interval)
            self.request_progress()

    def request_progress(self) -> None:
        """Ask etcd to confirm the current revision to this cache's watch."""
        if self._watch is not None:
            self._watch.request_progress()

    async def _relist(self) -> None:
        # In pages at the first page's revision: one etcd response holds at most 64 MiB.
        page = await self.store.list(self.info, limit=LIST_PAGE)
        objects = dict(page.items)
        skipped = set(page.undecryptable)
        while page.more:
            page = await self.store.list(
                self.info, revision=page.revision, start_key=page.last_key + "\0", limit=LIST_PAGE
            )
            objects.update(page.items)
            skipped.update(page.undecryptable)
        for watcher in self._watchers.all():
            watcher.close(UnavailableError(f"the {self.info.plural} watch cache re-synced; watch again"))
        self.objects.replace_all(objects)
        self.undecryptable = skipped
        self.revision = page.revision
        self.event_revision = page.revision
        self._window_start = page.revision
        self._history.clear()
        self._history_bytes = 0
        self.ready.set()
        await self._notify_advanced()
        log.info("watch cache %s: %d objects at revision %d", self.info.plural, len(objects), self.revision)

    def _decode(self, key: str, value: bytes, revision: int) -> Message | None:
        try:
            obj = self.store.decode(self.info, key, value, revision)
        except EncryptionError as err:
            # One undecryptable value (a key missing from the encryption config) must not stop the cache.
            log.error("watch cache %s: skipping %s: %s", self.info.plural, key, err)
            return None
        return obj

    def _apply(self, batch: WatchBatch) -> None:
        # Synchronous on purpose: a watcher registers between batches, never inside one.
        for change in batch.events:
            prev = self.objects.get(change.key)
            if prev is None and change.prev_value:
                prev = self._decode(change.key, change.prev_value, 0)
            if change.deleted:
                self.undecryptable.discard(change.key)
                if prev is None:
                    continue  # deleted before we ever saw it: nothing to tell
                obj = self.info.message()
                obj.CopyFrom(prev)
                meta(obj).resource_version = str(change.revision)
                self.objects.remove(change.key)
                ev = CacheEvent(DELETED, change.key, obj, prev, change.revision)
            else:
                decoded = self._decode(change.key, change.value, change.revision)
                if decoded is None:
                    self.undecryptable.add(change.key)
                    if prev is not None:  # it was readable before: to watchers it is gone now
                        self.objects.remove(change.key)
                        gone = self.info.message()
                        gone.CopyFrom(prev)
                        meta(gone).resource_version = str(change.revision)
                        self._record(CacheEvent(DELETED, change.key, gone, prev, change.revision))
                    continue
                self.undecryptable.discard(change.key)
                obj = decoded
                self.objects.put(change.key, obj)
                kind = ADDED if prev is None else MODIFIED
                ev = CacheEvent(kind, change.key, obj, prev, change.revision)
            self._record(ev)
        if batch.events:
            self.event_revision = max(self.event_revision, batch.revision)
        if batch.events or self.revision >= self._progress_trusted_from:
            self.revision = max(self.revision, batch.revision)

    def _record(self, ev: CacheEvent) -> None:
        """Keep an event in the history and offer it to every watcher."""
        self._history.append(ev)
        self._history_bytes += ev.obj.ByteSize()
        # Bounded by count and by bytes (10,000 events of 1 MiB objects would be 10 GiB); always keep the
        # newest event, so a watch can resume from the revision before it.
        while len(self._history) > 1 and (len(self._history) > self.window or self._history_bytes > self.window_bytes):
            dropped = self._history.popleft()
            self._history_bytes -= dropped.obj.ByteSize()
            self._window_start = dropped.revision
        self.events_received += 1
        for watcher in self._watchers.interested(ev.obj, ev.prev):
            self.events_dispatched += 1
            watcher.offer(ev)

    async def _notify_advanced(self) -> None:
        async with self._advanced:
            self._advanced.notify_all()

    # ----------------------------------------------------------- serving

    async def wait_for_revision(self, revision: int, timeout: float) -> bool:
        """Wait until the cache has every change up to ``revision``; False on timeout."""
        if self.revision >= revision:
            return True
        try:
            async with asyncio.timeout(timeout), self._advanced:
                await self._advanced.wait_for(lambda: self.revision >= revision)
        except TimeoutError:
            return False
        return True

    async def wait_fresh(self, timeout: float = 3.0) -> bool:
        """Wait until the cache is as current as etcd is now (a consistent read); False on timeout.

        Concurrent callers share one check: a check that started after a caller arrived answers for it (etcd
        was read after the caller asked), so a burst of Lists — thousands of agents listing their pods after
        an API server restart — costs one or two etcd reads, not one per List. A caller that arrives while
        an older check runs waits for it to end and shares the next."""
        await asyncio.wait_for(self.ready.wait(), timeout)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        self._arrivals += 1
        me = self._arrivals
        while True:
            shared = self._fresh
            if shared is not None and (shared[0] >= me or not shared[1].done()):
                try:
                    answer = await asyncio.wait_for(asyncio.shield(shared[1]), max(0.01, deadline - loop.time()))
                except TimeoutError:
                    return False
                except _CheckAbandoned:
                    continue  # its caller went away: check again
                except Exception:
                    if shared[0] >= me:
                        raise  # the check that answers for us failed (etcd unavailable): so do we
                    continue
                if shared[0] >= me:
                    return answer
                continue  # an older check: the next one covers us
            future: asyncio.Future[bool] = loop.create_future()
            self._fresh = (self._arrivals, future)
            try:
                answer = await self._check_fresh(max(0.01, deadline - loop.time()))
            except Exception as err:
                future.set_exception(err)
                future.exception()  # retrieved, whoever else waits or not
                raise
            except BaseException:
                future.set_exception(_CheckAbandoned())
                future.exception()
                raise
            future.set_result(answer)
            return answer

    async def _check_fresh(self, timeout: float) -> bool:
        """Wait until the cache is as current as etcd is now (a consistent read); False on timeout.

        Progress notifications cannot prove it: etcd before 3.5.8 may announce a revision while events up to
        it are still on their way. So one keys-only read at etcd's current revision gives this kind's object
        count and newest mod_revision, and the cache is current once its events reach that revision with the
        same count (a pending delete would leave it one object too many; a pending write, behind)."""
        current = await self.store.client.current_revision()
        if self.event_revision >= current:
            return True
        count, newest = await self.store.key_summary(self.info, current)

        def caught_up() -> bool:
            if self.event_revision >= current:
                return True  # events arrive in order: everything up to ``current`` is in
            return self.event_revision >= newest and len(self.objects) + len(self.undecryptable) == count

        if not caught_up():
            try:
                async with asyncio.timeout(timeout), self._advanced:
                    await self._advanced.wait_for(caught_up)
            except TimeoutError:
                log.warning(
                    "watch cache %s: not current after %.1fs (events to %d, etcd at %d); reading etcd",
                    self.info.plural,
                    timeout,
                    self.event_revision,
                    current,
                )
                return False
        if self.event_revision < current:
            # Proven: nothing of this kind is pending up to ``current``.
            self.event_revision = current
            self.revision = max(self.revision, current)
            await self._notify_advanced()
        return True

    @property
    def oldest_revision(self) -> int:
        """The oldest resourceVersion a watch may start from."""
        return self._window_start

    def list(self, flt: Filter, *, ordered: bool = True) -> list[Message]:
        """Every selected object, in key order unless ``ordered`` is False; the cost follows the smallest
        index bucket the filter names (namespace, indexed field, name), not the whole kind."""
        return [obj for _, obj in self.objects.select(flt, ordered=ordered)]

    def get(self, key: str) -> Message | None:
        """One object by storage key."""
        return self.objects.get(key)

    async def watch(self, flt: Filter, resource_version: int | None, *, timeout: float = 3.0) -> CacheWatcher:
        """Start a watch after ``resource_version`` (None: synthetic ADDED for current state first).

        Raises ``GoneError`` when the version is older than the history window.
        """
        await asyncio.wait_for(self.ready.wait(), timeout)
        if resource_version is None:
            initial = [CacheEvent(ADDED, key, obj, None, self.revision) for key, obj in self.objects.select(flt)]
        else:
            if not await self.wait_for_revision(resource_version, timeout):
                self.request_progress()
                if not await self.wait_for_revision(resource_version, timeout):
                    raise UnavailableError(
                        f"too large resource version: {resource_version} (current for {self.info.plural}: "
                        f"{self.revision}); retry"
                    )
            # No await from here to registration: no event can slip between replay and live.
            if resource_version < self._window_start:
                raise GoneError(
                    f"too old resource version: {resource_version} (oldest available for {self.info.plural}: "
                    f"{self._window_start}); list again"
                )
            probe = CacheWatcher(self, flt, self.watcher_capacity, ())
            initial = [seen for ev in self._history if ev.revision > resource_version if (seen := probe.transform(ev))]
        watcher = CacheWatcher(self, flt, self.watcher_capacity, initial)
        self._watchers.add(watcher)
        return watcher

    def unregister(self, watcher: CacheWatcher) -> None:
        """Stop sending events to a watcher."""
        self._watchers.discard(watcher)

    @property
    def history_length(self) -> int:
        """Events held for watches that resume from a resourceVersion."""
        return len(self._history)

    @property
    def object_count(self) -> int:
        """Objects held (those that could not be decrypted included)."""
        return len(self.objects) + len(self.undecryptable)

    @property
    def watcher_count(self) -> int:
        """How many watchers are registered."""
        return len(self._watchers)
