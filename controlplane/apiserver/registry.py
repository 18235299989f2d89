"""The one code path behind every verb, for every kind.

Each verb: resolve the kind -> check input -> apply the kind's strategy ->
validate -> one guarded etcd write (or a read from the watch cache). Updates
without a resourceVersion and patches re-read and retry on conflict, so no
write is ever unguarded.
"""

from __future__ import annotations

import asyncio
import base64
import builtins
import contextlib
import dataclasses
import json
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp

from controlplane import transport
from controlplane.api import fieldvalidation, kinds, validation
from controlplane.api.errors import (
    AlreadyExistsError,
    ApiError,
    ConflictError,
    ForbiddenError,
    GoneError,
    InvalidError,
    NotFoundError,
    TooManyRequestsError,
)
from controlplane.api.kinds import KindInfo
from controlplane.api.objects import describe, from_manifest, meta, to_manifest
from controlplane.api.patches import merge_patch
from controlplane.api.pb import rbac_pb2
from controlplane.api.selectors import parse_field_selector, parse_label_selector
from controlplane.apiserver.allocator import ServiceAllocator, ServiceRanges
from controlplane.apiserver.bootstrappolicy import (
    default_cluster_role_bindings,
    default_cluster_roles,
    default_priority_classes,
    needs_reset,
)
from controlplane.apiserver.strategy import PROTECTED_NAMESPACES, StoreContext, Strategy, StrategyOptions, for_kind
from controlplane.apiserver.watchcache import CacheWatcher, Filter, WatchCache
from controlplane.storage import Store
from controlplane.storage.keys import kind_prefix, object_key
from controlplane.storage.store import MAX_TXN_OPS, GuardChangedError

"""Namespaces that exist from the first start and may not be deleted."""

DRY_RUN_ALL = "All"
_MAX_CONFLICT_RETRIES = 8


def _copy(obj: Message) -> Message:
    out = type(obj)()
    out.CopyFrom(obj)
    return out


def _rv(text: str, what: str = "resourceVersion") -> int:
    try:
        value = int(text)
    except ValueError:
        raise InvalidError(f"{what}: {text!r} is not a valid resource version") from None
    if value < 0:
        raise InvalidError(f"{what}: {text!r} is not a valid resource version")
    return value


def _check_dry_run(dry_run: str) -> bool:
    if dry_run not in ("", DRY_RUN_ALL):
        raise InvalidError(f"dryRun: {dry_run!r} is not supported; use 'All' or leave it empty")
    return dry_run == DRY_RUN_ALL


def _total_bytes(items: list[Message]) -> int:
    return sum(obj.ByteSize() for obj in items)


class ListResult:
    """One page of a List."""

    def __init__(self, items: list[Message], resource_version: int, cont: str = "", remaining: int = 0) -> None:
        self.items = items
        self.resource_version = resource_version
        self.cont = cont
        self.remaining = remaining


MAX_PAGE_BYTES = 8 * 1024 * 1024
"""A page stops after the object that takes it past this size, whatever the limit (objects are at most
1.5 MiB, so a page stays well inside the 16 MiB message cap)."""
MAX_LIST_BYTES = transport.MAX_MESSAGE_BYTES - 1024 * 1024
"""The largest unpaged List answered (the message cap, less room for envelopes)."""
MAX_CONTINUE_LENGTH = 4096
"""A continue token holds a revision and a storage key (keys are bounded by name lengths), base64-encoded."""


class Registry:
    """Generic create/get/list/update/patch/delete/watch over the store and the watch caches."""

    def __init__(
        self,
        store: Store,
        caches: dict[str, WatchCache],
        *,
        now: Callable[[], datetime] | None = None,
        not_ready_toleration_seconds: int = 30,
        unreachable_toleration_seconds: int = 30,
        service_ranges: ServiceRanges | None = None,
        admit: Callable[[Message, Message | None], Awaitable[None]] | None = None,
        strategy_options: StrategyOptions | None = None,
    ):
        self.store = store
        self.admit = admit
        """Checks a new or changed object against its author (RBAC escalation); after validation."""
        self.allocator = ServiceAllocator(store, service_ranges)
        self.caches = caches
        self._now = now or (lambda: datetime.now(UTC))
        options = dataclasses.replace(
            strategy_options or StrategyOptions(),
            not_ready_toleration_seconds=not_ready_toleration_seconds,
            unreachable_toleration_seconds=unreachable_toleration_seconds,
        )
        self._strategies = {info.kind: for_kind(info, options) for info in kinds.KINDS}
        self._store_context = StoreContext(store, self.allocator, lambda kind: self.caches[kind].list(Filter()))

    def strategy(self, info: KindInfo) -> Strategy:
        """The kind's strategy."""
        return self._strategies[info.kind]

    def _timestamp(self, delta: float = 0.0) -> Timestamp:
        ts = Timestamp()
        ts.FromDatetime(self._now().replace(microsecond=0) + timedelta(seconds=delta))
        return ts

    # ------------------------------------------------------------ create

    async def create(self, obj: Message, *, dry_run: str = "") -> Message:
        """Create an object; the server assigns uid, creationTimestamp, generation, resourceVersion."""
        dry = _check_dry_run(dry_run)
        info = kinds.of_message(obj)
        obj = _copy(obj)
        m = meta(obj)
        if info.namespaced and not m.namespace:
            m.namespace = "default"
        if not m.name and m.generate_name:
            m.name = m.generate_name + uuid.uuid4().hex[:5]
        obj.api_version, obj.kind = info.api_version, info.kind  # type: ignore[attr-defined]
        # Server-owned metadata: whatever the client sent is replaced.
        m.uid = str(uuid.uuid4())
        m.resource_version = ""
        m.generation = 1
        m.creation_timestamp.CopyFrom(self._timestamp())
        m.ClearField("deletion_timestamp")
        m.ClearField("deletion_grace_period_seconds")
        strategy = self.strategy(info)
        strategy.prepare_for_create(obj)
        strategy.admit_create(obj)
        validation.validate(obj)
        if self.admit is not None:
            await self.admit(obj, None)
        fresh_namespace = False
        while True:
            # The namespace must still be the active one that was checked when the object lands (the create
            # transaction compares its revision): one marked Terminating in between fails the create, which
            # then checks again from etcd — so nothing is created in a namespace being deleted.
            guard = (
                await self._require_active_namespace(m.namespace, obj, fresh=fresh_namespace) if info.namespaced else ()
            )
            if dry:
                return obj
            try:
                return await strategy.create(self._store_context, obj, guard)
            except GuardChangedError:
                if fresh_namespace:
                    raise ConflictError(f"{describe(obj)}: its namespace keeps changing; try again") from None
                fresh_namespace = True

    def _claims(self, obj: Message) -> list[str]:
        return self.strategy(kinds.of_message(obj)).claims(obj)

    async def _require_active_namespace(
        self, namespace: str, obj: Message, *, fresh: bool = False
    ) -> tuple[tuple[str, int]]:
        """The namespace's key and revision, once it is known to exist and not be terminating (from the cache,
        or from etcd when ``fresh`` or not cached)."""
        ns_info = kinds.lookup("Namespace")
        key = object_key(ns_info, "", namespace)
        ns = None if fresh else self.caches[ns_info.kind].get(key)
        if ns is None:
            try:  # the cache may lag a namespace created a moment ago
                ns = await self.store.get(ns_info, "", namespace)
            except NotFoundError:
                raise NotFoundError(f'namespace "{namespace}" not found: create it before {describe(obj)}') from None
        if meta(ns).HasField("deletion_timestamp"):
            raise ForbiddenError(f'unable to create {describe(obj)}: namespace "{namespace}" is being terminated')
        return ((key, int(meta(ns).resource_version)),)

    # --------------------------------------------------------------- get

    async def get(self, info: KindInfo, namespace: str, name: str) -> Message:
        """Read one object from etcd (linearizable)."""
        if info.namespaced and not namespace:
            namespace = "default"
        if not name:
            raise InvalidError(f"name: required to get a {info.kind}")
        return await self.store.get(info, namespace if info.namespaced else "", name)

    # -------------------------------------------------------------- list

    def _filter(self, info: KindInfo, namespace: str, label_selector: str, field_selector: str) -> Filter:
        return Filter(
            namespace=namespace if info.namespaced else "",
            labels=parse_label_selector(label_selector),
            fields=parse_field_selector(field_selector, info),
        )

    async def list(
        self,
        info: KindInfo,
        namespace: str = "",
        *,
        label_selector: str = "",
        field_selector: str = "",
        limit: int = 0,
        cont: str = "",
        resource_version: str = "",
    ) -> ListResult:
        """List objects.

        Unpaged lists come from the watch cache (after proving it current, unless rv is "0") and are refused
        with RESOURCE_EXHAUSTED, asking for pages, when the answer would not fit in one message. A first page
        whose whole answer fits is served from the cache too (complete, no continue token); otherwise pages
        read etcd at the first page's revision, so they never skip or repeat an object, and each page is
        bounded by ``limit`` and by ``MAX_PAGE_BYTES`` (a short page with a continue token is normal)."""
        flt = self._filter(info, namespace, label_selector, field_selector)
        if limit < 0:
            raise InvalidError(f"limit: {limit} must not be negative")
        if cont:
            return await self._list_paged(info, flt, limit, cont)
        cache = self.caches[info.kind]
        if resource_version == "0":
            await asyncio.wait_for(cache.ready.wait(), 3.0)
            fresh = True
        elif resource_version:
            fresh = await cache.wait_for_revision(_rv(resource_version), 3.0)
        else:
            fresh = await cache.wait_fresh()
        if fresh:
            items = cache.list(flt)
            if not limit or (len(items) <= limit and _total_bytes(items) <= MAX_PAGE_BYTES):
                result = ListResult(items, cache.revision)
                if not limit:
                    self._check_unpaged_size(info, result)
                return result
        result = await self._list_paged(info, flt, limit, "")  # a page, or the cache lagging: read etcd
        if not limit:
            self._check_unpaged_size(info, result)
        return result

    @staticmethod
    def _check_unpaged_size(info: KindInfo, result: ListResult) -> None:
        size = _total_bytes(result.items)
        if size > MAX_LIST_BYTES:
            raise TooManyRequestsError(
                f"the list of {len(result.items)} {info.plural} is {size / 2**20:.1f} MiB, more than one "
                f"message may carry ({MAX_LIST_BYTES / 2**20:.0f} MiB); list in pages with limit (e.g. 500) and "
                "continue, as informers and navarch get do"
            )

    async def _list_paged(self, info: KindInfo, flt: Filter, limit: int, cont: str) -> ListResult:
        revision, start_key = 0, ""
        if cont:
            revision, start_key = self._decode_continue(info, cont)
        items: list[Message] = []
        size = 0
        prefix = kind_prefix(info, flt.namespace)
        last_key = ""
        while True:
            chunk = max(limit - len(items), 100) if limit else 500
            try:
                page = await self.store.list(
                    info, flt.namespace, revision=revision, start_key=start_key or prefix, limit=chunk
                )
            except GoneError:
                raise GoneError(
                    "the continue token has expired (its revision was compacted); list again from the start"
                ) from None
            # etcd's header names the current revision even for a read in the past: pin the first one.
            revision = revision or page.revision
            unread = 0
            full = False
            last_key = page.last_key or last_key
            for index, (key, obj) in enumerate(page.items):
                last_key = key
                if flt.matches(obj):
                    items.append(obj)
                    size += obj.ByteSize()
                    if (limit and len(items) == limit) or (limit and size >= MAX_PAGE_BYTES):
                        unread = len(page.items) - index - 1
                        full = True
                        break
            if full:
                if page.more or unread:
                    remaining = page.remaining + unread
                    return ListResult(items, revision, self._encode_continue(revision, last_key), remaining)
                return ListResult(items, revision)
            if not page.more:
                return ListResult(items, revision)
            start_key = last_key + "\0"

    @staticmethod
    def _encode_continue(revision: int, key: str) -> str:
        raw = json.dumps({"rv": revision, "start": key + "\0"}).encode()
        return base64.urlsafe_b64encode(raw).decode()

    @staticmethod
    def _decode_continue(info: KindInfo, token: str) -> tuple[int, str]:
        if len(token) > MAX_CONTINUE_LENGTH:
            raise InvalidError(
                f"continue: the token is {len(token)} characters, longer than any this server issues "
                f"({MAX_CONTINUE_LENGTH}); use the one from the previous page"
            )
        try:
            data = json.loads(base64.urlsafe_b64decode(token.encode()))
            revision, start = int(data["rv"]), str(data["start"])
        except (ValueError, KeyError, TypeError):
            raise InvalidError("continue: the token is malformed; use the one from the previous page") from None
        if not start.startswith(kind_prefix(info)):
            raise InvalidError(f"continue: the token belongs to another list, not {info.plural}")
        return revision, start

    # ------------------------------------------------------------ update

    async def update(self, obj: Message, *, status: bool = False, dry_run: str = "") -> Message:
        """Replace an object (or only its status). A resourceVersion makes it conditional; without one the
        server re-reads and retries on conflict."""
        info = kinds.of_message(obj)
        if status and not info.has_status:
            raise NotFoundError(f"{info.plural} have no status subresource: use Update")
        m = meta(obj)
        namespace = (m.namespace or "default") if info.namespaced else ""
        expected = _rv(m.resource_version) if m.resource_version else None

        def mutate(current: Message) -> Message:
            new = _copy(obj)
            new_meta = meta(new)
            if info.namespaced and not new_meta.namespace:
                new_meta.namespace = "default"
            return new

        return await self._guarded_update(info, namespace, m.name, expected, mutate, status=status, dry_run=dry_run)

    async def patch(
        self,
        info: KindInfo,
        namespace: str,
        name: str,
        patch: str,
        *,
        status: bool = False,
        dry_run: str = "",
        field_validation: str = "",
        warnings: builtins.list[str] | None = None,
    ) -> Message:
        """Apply an RFC 7386 merge patch to the object's manifest; retries on conflict unless the patch names a
        resourceVersion. Fields the schema does not model follow ``field_validation`` (default Warn, as in
        Kubernetes); warnings about them are appended to ``warnings``."""
        policy = fieldvalidation.check_policy(field_validation or fieldvalidation.WARN, what="fieldValidation")
        if status and not info.has_status:
            raise NotFoundError(f"{info.plural} have no status subresource: use Patch")
        try:
            doc = json.loads(patch)
        except ValueError as err:
            raise InvalidError(f'{info.kind} "{name}": mergePatch: not valid JSON: {err}') from None
        if not isinstance(doc, dict):
            raise InvalidError(f'{info.kind} "{name}": mergePatch: must be a JSON object')
        namespace = (namespace or "default") if info.namespaced else ""
        md = doc.get("metadata") if isinstance(doc.get("metadata"), dict) else {}
        assert isinstance(md, dict)
        expected = _rv(str(md["resourceVersion"]), "metadata.resourceVersion") if md.get("resourceVersion") else None
        for field, current in (("name", name), ("namespace", namespace)):
            if field in md and md[field] != current and not (field == "namespace" and not info.namespaced):
                raise InvalidError(f'{info.kind} "{name}": metadata.{field}: may not be changed by a patch')

        def mutate(current: Message) -> Message:
            patched: Any = merge_patch(to_manifest(current), doc)
            if not isinstance(patched, dict):
                raise InvalidError(f'{info.kind} "{name}": the patch must leave an object')
            patched["apiVersion"], patched["kind"] = info.api_version, info.kind
            found: list[str] = []
            new = from_manifest(patched, field_validation=policy, warnings=found)
            if warnings is not None:
                warnings[:] = found  # a retried mutation reports once
            if not md.get("resourceVersion"):
                meta(new).resource_version = meta(current).resource_version
            return new

        return await self._guarded_update(info, namespace, name, expected, mutate, status=status, dry_run=dry_run)

    async def _guarded_update(
        self,
        info: KindInfo,
        namespace: str,
        name: str,
        expected: int | None,
        mutate: Callable[[Message], Message],
        *,
        status: bool,
        dry_run: str,
    ) -> Message:
        dry = _check_dry_run(dry_run)
        if not name:
            raise InvalidError(f"metadata.name: required to update a {info.kind}")
        strategy = self.strategy(info)
        for _attempt in range(_MAX_CONFLICT_RETRIES):
            old = await self.store.get(info, namespace, name)
            old_rv = int(meta(old).resource_version)
            if expected is not None and expected != old_rv:
                raise ConflictError(
                    f"Operation cannot be fulfilled on {describe(old)}: the object has been modified "
                    f"(resourceVersion {expected} is stale, current is {old_rv}); read the latest version and try again"
                )
            new = await self._prepare_update(info, strategy, old, mutate(old), status=status)
            if new == old or dry:
                return new  # no-op writes are not stored (and emit no watch event)
            try:
                if self._finalized(strategy, new):
                    revision = await self.store.delete(info, new, old_rv, release=self._claims(old))
                    meta(new).resource_version = str(revision)
                    return new
                return await self.store.update(info, new, old_rv, ttl=strategy.ttl_seconds())
            except ConflictError:
                if expected is not None:
                    raise
        raise ConflictError(f'{info.kind} "{name}" is being changed too often to update; try again')

    async def _prepare_update(
        self, info: KindInfo, strategy: Strategy, old: Message, new: Message, *, status: bool
    ) -> Message:
        """``new`` made ready to replace ``old``: server fields carried over, the kind's strategy applied,
        validated and admitted; its resourceVersion is ``old``'s (the guard of the write)."""
        self._carry_server_fields(info, new, old)
        if status:
            strategy.prepare_for_status_update(new, old)
        else:
            strategy.prepare_for_update(new, old)
        if strategy.spec_of(new) != strategy.spec_of(old):
            meta(new).generation = meta(old).generation + 1
        validation.validate(new)
        errs = validation.Errors()
        strategy.validate_update(errs, new, old)
        errs.raise_for(new)
        if self.admit is not None and not status:
            await self.admit(new, old)
        meta(new).resource_version = meta(old).resource_version
        return new

    async def update_many(
        self, info: KindInfo, changes: builtins.list[tuple[str, str, Callable[[Message], Message]]]
    ) -> builtins.list[Message | ApiError]:
        """Apply several changes, given as (namespace, name, mutate), in one etcd transaction: each one read,
        mutated, prepared and validated as ``update`` does, and written guarded by the revision it was read
        at. Returns, in order, each object as stored or the ``ApiError`` that stopped that one alone (``mutate``
        raises one to refuse a change). A change whose object moved meanwhile is read and mutated again.
        Changes that would remove an object (its last finalizer gone) are refused: use ``update``."""
        if len(changes) > MAX_TXN_OPS:
            raise InvalidError(f"at most {MAX_TXN_OPS} {info.plural} may be changed in one request")
        strategy = self.strategy(info)
        results: builtins.list[Message | ApiError] = [
            ConflictError(f"{info.kind} is being changed too often to update; try again") for _ in changes
        ]
        todo = builtins.list(range(len(changes)))
        for _attempt in range(_MAX_CONFLICT_RETRIES):
            if not todo:
                break
            current = await self.store.get_many(info, [(changes[i][0], changes[i][1]) for i in todo])
            writes: builtins.list[tuple[int, Message, int]] = []
            for i, old in zip(todo, current, strict=True):
                namespace, name, mutate = changes[i]
                try:
                    if old is None:
                        where = f"{namespace}/{name}" if info.namespaced else name
                        raise NotFoundError(f'{info.kind} "{where}" not found')
                    new = await self._prepare_update(info, strategy, old, mutate(_copy(old)), status=False)
                    if self._finalized(strategy, new):
                        raise ConflictError(f"{describe(old)}: this change removes the object; use Update")
                except ApiError as err:
                    results[i] = err
                    continue
                if new == old:
                    results[i] = new  # no-op writes are not stored
                else:
                    writes.append((i, new, int(meta(old).resource_version)))
            stored = await self.store.update_many(info, [(new, rev) for _, new, rev in writes]) if writes else []
            todo = []
            for (i, _, _), obj in zip(writes, stored, strict=True):
                if obj is None:
                    todo.append(i)  # changed since it was read: read it and mutate again
                else:
                    results[i] = obj
        return results

    @staticmethod
    def _carry_server_fields(info: KindInfo, new: Message, old: Message) -> None:
        """Fields only the server writes are taken from the stored object, whatever the client sent."""
        n, o = meta(new), meta(old)
        new.api_version, new.kind = info.api_version, info.kind  # type: ignore[attr-defined]
        n.namespace, n.name, n.uid, n.generation = o.namespace, o.name, o.uid, o.generation
        n.creation_timestamp.CopyFrom(o.creation_timestamp)
        if o.HasField("deletion_timestamp"):
            n.deletion_timestamp.CopyFrom(o.deletion_timestamp)
            n.deletion_grace_period_seconds = o.deletion_grace_period_seconds
        else:
            n.ClearField("deletion_timestamp")
            n.ClearField("deletion_grace_period_seconds")

    @staticmethod
    def _finalized(strategy: Strategy, obj: Message) -> bool:
        """An object being deleted whose last finalizer went away is removed (if its kind allows it now)."""
        m = meta(obj)
        if not m.HasField("deletion_timestamp") or m.finalizers:
            return False
        return strategy.removable(obj)

    # ------------------------------------------------------------ delete

    async def delete(
        self,
        info: KindInfo,
        namespace: str,
        name: str,
        *,
        grace_period_seconds: int | None = None,
        propagation_policy: str = "",
        precondition_uid: str = "",
        precondition_rv: str = "",
        dry_run: str = "",
    ) -> tuple[Message, bool]:
        """Delete an object, gracefully where the kind needs it. Returns (object, removed-from-storage)."""
        dry = _check_dry_run(dry_run)
        if propagation_policy not in ("", "Orphan", "Background", "Foreground"):
            raise InvalidError(
                f"propagationPolicy: {propagation_policy!r} is not one of Orphan, Background, Foreground"
            )
        if grace_period_seconds is not None and grace_period_seconds < 0:
            raise InvalidError(f"gracePeriodSeconds: {grace_period_seconds} must not be negative")
        namespace = (namespace or "default") if info.namespaced else ""
        strategy = self.strategy(info)
        strategy.check_delete(name)
        for _attempt in range(_MAX_CONFLICT_RETRIES):
            old = await self.store.get(info, namespace, name)
            m = meta(old)
            if precondition_uid and precondition_uid != m.uid:
                raise ConflictError(f"Precondition failed for {describe(old)}: uid is {m.uid}, not {precondition_uid}")
            if precondition_rv and precondition_rv != m.resource_version:
                raise ConflictError(
                    f"Precondition failed for {describe(old)}: resourceVersion is {m.resource_version}, "
                    f"not {precondition_rv}"
                )
            old_rv = int(m.resource_version)
            new = _copy(old)
            nm = meta(new)
            finalizer = {"Orphan": "orphan", "Foreground": "foregroundDeletion"}.get(propagation_policy)
            if finalizer and finalizer not in nm.finalizers and not nm.HasField("deletion_timestamp"):
                nm.finalizers.append(finalizer)
            grace = strategy.graceful_delete_seconds(old, grace_period_seconds)
            grace = await strategy.delete_grace(self._store_context, new, grace)
            pending = bool(nm.finalizers) or grace > 0
            if not pending:
                if dry:
                    return old, True
                try:
                    revision = await self.store.delete(info, old, old_rv, release=self._claims(old))
                except ConflictError:
                    continue
                meta(old).resource_version = str(revision)
                return old, True
            # Already terminating: only a shorter grace period (pods) changes anything.
            graceful = strategy.graceful
            if nm.HasField("deletion_timestamp") and (not graceful or grace >= nm.deletion_grace_period_seconds):
                return old, False
            nm.deletion_timestamp.CopyFrom(self._timestamp(grace if graceful else 0))
            nm.deletion_grace_period_seconds = grace if graceful else 0
            if dry:
                return new, False
            try:
                return await self.store.update(info, new, old_rv, ttl=strategy.ttl_seconds()), False
            except ConflictError:
                continue
        raise ConflictError(f'{info.kind} "{name}" is being changed too often to delete; try again')

    # ------------------------------------------------------------- watch

    async def watch(
        self,
        info: KindInfo,
        namespace: str = "",
        *,
        label_selector: str = "",
        field_selector: str = "",
        resource_version: str = "",
    ) -> CacheWatcher:
        """Start a watch; "" or "0" starts with the current state as ADDED events."""
        flt = self._filter(info, namespace, label_selector, field_selector)
        rv = None if resource_version in ("", "0") else _rv(resource_version)
        return await self.caches[info.kind].watch(flt, rv)

    async def ensure_namespaces(self) -> None:
        """Create the namespaces that always exist, if missing."""
        ns_info = kinds.lookup("Namespace")
        for name in PROTECTED_NAMESPACES:
            try:
                await self.store.get(ns_info, "", name)
            except NotFoundError:
                ns = ns_info.message()
                meta(ns).name = name
                with contextlib.suppress(AlreadyExistsError):  # another API server won the race
                    await self.create(ns)

    async def ensure_priority_classes(self) -> None:
        """Create the built-in PriorityClasses if missing."""
        for default in default_priority_classes():
            with contextlib.suppress(AlreadyExistsError):  # present already, or another API server won the race
                await self.create(default)

    async def ensure_bootstrap_policy(self) -> None:
        """Create the default ClusterRoles and ClusterRoleBindings, and put back edited ones that allow it."""
        for default in [*default_cluster_roles(), *default_cluster_role_bindings()]:
            info = kinds.of_message(default)
            name = meta(default).name
            try:
                stored = await self.store.get(info, "", name)
            except NotFoundError:
                with contextlib.suppress(AlreadyExistsError):  # another API server won the race
                    await self.create(default)
                continue
            if needs_reset(stored, default):
                fixed = _copy(stored)
                field = "rules" if isinstance(default, rbac_pb2.ClusterRole) else "subjects"
                fixed.ClearField(field)
                getattr(fixed, field).extend(getattr(default, field))
                with contextlib.suppress(ConflictError):
                    await self.update(fixed)
