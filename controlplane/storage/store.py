"""Objects in etcd: every write is one transaction guarded by the key's mod_revision.

There is no read-modify-write without a guard anywhere: ``update`` and
``delete`` take the resourceVersion the caller based its change on and fail
with ``ConflictError`` if the key has moved since.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

import grpc
import grpc.aio
from etcd3aio._protobuf import Compare, TxnResponse
from google.protobuf.message import Message

from controlplane.api.errors import (
    AlreadyExistsError,
    ConflictError,
    NotFoundError,
    PreconditionError,
    UnavailableError,
)
from controlplane.api.kinds import KindInfo
from controlplane.api.objects import describe, meta
from controlplane.storage.client import EtcdClient
from controlplane.storage.codec import decode, encode
from controlplane.storage.encryption import EncryptionConfig, EncryptionError
from controlplane.storage.keys import kind_prefix, object_key, prefix_end
from controlplane.storage.leases import LeaseManager
from controlplane.storage.watch import EtcdWatch

MAX_TXN_OPS = 128
"""etcd's default ``--max-txn-ops``: the most reads or writes one transaction may hold."""

CLAIMS_PREFIX = "/registry/claims/"
"""Keys that make a resource unique across API servers: ``serviceips/<ip>``, ``nodeports/<port>``."""


def claim_key(claim: str) -> str:
    """The etcd key of a claim."""
    return CLAIMS_PREFIX + claim


class GuardChangedError(ConflictError):
    """A key a create depended on (its namespace) changed since the caller read it."""


class ClaimTakenError(ConflictError):
    """A claim asked for at create time is held by another object."""

    def __init__(self, claim: str, holder: str) -> None:
        super().__init__(f"{claim} is already held by {holder}")
        self.claim = claim
        self.holder = holder


log = logging.getLogger(__name__)

LIST_PAGE = 500
"""Keys per etcd read when listing a whole kind (Kubernetes' page size)."""


@dataclass
class StoredList:
    """One page of a range read at a fixed revision."""

    items: list[tuple[str, Message]]
    """(key, object) in key order."""
    revision: int
    """The revision the page was read at (the one asked for, or the current one)."""
    more: bool
    """True when keys remain after the last one returned."""
    remaining: int
    """How many keys remain after this page."""
    undecryptable: list[str] = field(default_factory=list)
    """Keys read but skipped: their values do not decrypt with any configured key (logged)."""
    last_key: str = ""
    """The last key read (returned or skipped): the next page starts after it."""


class Store:
    """Create, read, update, delete and list objects of any kind in etcd."""

    def __init__(self, client: EtcdClient, encryption: EncryptionConfig | None = None) -> None:
        self.client = client
        self.encryption = encryption or EncryptionConfig()
        self.leases = LeaseManager(client)
        self.undecryptable = 0
        """Values skipped by lists because no configured key decrypts them."""

    async def _lease(self, ttl: int | None) -> int:
        return await self.leases.lease_for(ttl) if ttl else 0

    def encode(self, info: KindInfo, key: str, obj: Message) -> bytes:
        """The value stored for an object (encrypted when the encryption config names its resource)."""
        return self.encryption.for_resource(info.plural).to_storage(encode(obj), key)

    def decode(self, info: KindInfo, key: str, value: bytes, mod_revision: int) -> Message:
        """The object a stored value holds; ``EncryptionError`` if it cannot be decrypted."""
        return decode(info, self.encryption.for_resource(info.plural).from_storage(value, key), mod_revision)

    async def create(
        self,
        info: KindInfo,
        obj: Message,
        *,
        claims: Sequence[str] = (),
        ttl: int | None = None,
        unchanged: Sequence[tuple[str, int]] = (),
    ) -> Message:
        """Store a new object; ``AlreadyExistsError`` if the key exists. Returns it with its resourceVersion.
        With ``ttl`` (seconds) etcd deletes the key on its own after at least that long (Events).
        ``unchanged`` are (key, mod_revision) pairs that must still hold, in the same transaction (the
        object's namespace as it was checked to be active); ``GuardChangedError`` if one does not.

        ``claims`` are keys (under ``/registry/claims/``) that must not exist and are created in the same
        transaction, holding the object's key: unique resources such as a Service's cluster IP. A taken
        claim raises ``ClaimTakenError`` naming it, and nothing is written."""
        kv = self.client.kv
        m = meta(obj)
        key = object_key(info, m.namespace, m.name)
        value = self.encode(info, key, obj)
        claim_keys = [claim_key(c) for c in claims]
        for _ in range(2):
            lease = await self._lease(ttl)
            txn = _Attempts(
                lambda t, lease=lease: kv.txn(  # type: ignore[misc]
                    compare=[
                        *(kv.txn_compare_create_revision(k, 0) for k in (key, *claim_keys)),
                        *(_mod_revision_equals(k, rev) for k, rev in unchanged),
                    ],
                    success=[
                        kv.txn_op_put(key, value, lease=lease),
                        *(kv.txn_op_put(c, key.encode()) for c in claim_keys),
                    ],
                    failure=[kv.txn_op_get(k) for k in (key, *claim_keys, *(k for k, _ in unchanged))],
                    timeout=t,
                )
            )
            if (resp := await self._call_with_lease(txn, f"create {key}", lease)) is not None:
                break
        else:
            raise UnavailableError(f"create {key}: etcd lost two fresh leases in a row; try again")
        if not resp.succeeded:
            # A retried attempt may find its own earlier, applied write: the uid makes the bytes unique.
            if txn.retried and _holds(resp, value):
                return self._with_revision(info, obj, _mod_revision(resp))
            if resp.responses and resp.responses[0].response_range.kvs:
                raise AlreadyExistsError(f"{describe(obj)} already exists")
            for claim, answer in zip(claims, resp.responses[1:], strict=False):
                if answer.response_range.kvs:
                    holder = answer.response_range.kvs[0].value.decode(errors="replace")
                    raise ClaimTakenError(claim, holder)
            for (guard, rev), answer in zip(unchanged, resp.responses[1 + len(claims) :], strict=False):
                kvs = answer.response_range.kvs
                if not kvs or int(kvs[0].mod_revision) != rev:
                    raise GuardChangedError(f"{describe(obj)}: {guard} changed while it was being created")
            raise ConflictError(f"{describe(obj)}: the write raced another; try again")
        return self._with_revision(info, obj, int(resp.header.revision))

    async def _call_with_lease(self, txn: _Attempts, what: str, lease: int) -> TxnResponse | None:
        """Run a write; None when etcd no longer knows its lease (the caller takes a fresh one and retries)."""
        try:
            return await self.client.call(txn, what)
        except grpc.aio.AioRpcError as err:
            if lease and err.code() == grpc.StatusCode.NOT_FOUND and "lease not found" in (err.details() or ""):
                self.leases.forget(lease)
                return None
            raise

    async def count_in_namespace(self, kinds_: Sequence[KindInfo], namespace: str) -> dict[str, int]:
        """How many objects of each namespaced kind ``namespace`` holds in etcd now, all counted at one
        revision (the first count's). Count-only ranges at a revision, not one read-only transaction: etcd
        before 3.5.5 panics when a read-only transaction's client gives up on it (etcd-io/etcd#14110)."""
        namespaced = [info for info in kinds_ if info.namespaced]
        if not namespaced:
            return {}
        kv = self.client.kv

        async def count(info: KindInfo, revision: int) -> tuple[int, int]:
            p = kind_prefix(info, namespace)
            resp = await self.client.call(
                lambda t: kv.get(p, range_end=prefix_end(p), revision=revision, count_only=True, timeout=t),
                f"count the {info.plural} in namespace {namespace}",
            )
            return int(resp.count), int(resp.header.revision)

        first, revision = await count(namespaced[0], 0)
        rest = await asyncio.gather(*(count(info, revision) for info in namespaced[1:]))
        return {info.kind: n for info, (n, _) in zip(namespaced, [(first, revision), *rest], strict=True)}

    async def claimed(self, prefix: str) -> set[str]:
        """Every claim under ``prefix`` (e.g. ``serviceips/``), without the prefix."""
        start = claim_key(prefix)
        resp = await self.client.call(
            lambda t: self.client.kv.get(start, range_end=prefix_end(start), keys_only=True, timeout=t),
            f"list claims {prefix}",
        )
        return {kv.key.decode()[len(start) :] for kv in resp.kvs}

    @staticmethod
    def _with_revision(info: KindInfo, obj: Message, revision: int) -> Message:
        out = info.message()
        out.CopyFrom(obj)
        meta(out).resource_version = str(revision)
        return out

    async def get(self, info: KindInfo, namespace: str, name: str) -> Message:
        """Read one object (linearizable); ``NotFoundError`` if there is none."""
        key = object_key(info, namespace, name)
        resp = await self.client.call(lambda t: self.client.kv.get(key, timeout=t), f"get {key}")
        if not resp.kvs:
            where = f"{namespace}/{name}" if info.namespaced else name
            raise NotFoundError(f'{info.kind} "{where}" not found')
        kv = resp.kvs[0]
        try:
            return self.decode(info, key, kv.value, kv.mod_revision)
        except EncryptionError as err:
            raise PreconditionError(f"{info.kind} {key} cannot be read: {err}") from None

    async def update(self, info: KindInfo, obj: Message, expected_revision: int, *, ttl: int | None = None) -> Message:
        """Replace an object if its key's mod_revision is still ``expected_revision``; ``ttl`` restarts the
        key's time to live (a put without a lease would make an expiring key permanent)."""
        kv = self.client.kv
        m = meta(obj)
        key = object_key(info, m.namespace, m.name)
        value = self.encode(info, key, obj)
        for _ in range(2):
            lease = await self._lease(ttl)
            txn = _Attempts(
                lambda t, lease=lease: kv.txn(  # type: ignore[misc]
                    compare=[_mod_revision_equals(key, expected_revision)],
                    success=[kv.txn_op_put(key, value, lease=lease)],
                    failure=[kv.txn_op_get(key)],
                    timeout=t,
                )
            )
            if (resp := await self._call_with_lease(txn, f"update {key}", lease)) is not None:
                break
        else:
            raise UnavailableError(f"update {key}: etcd lost two fresh leases in a row; try again")
        if not resp.succeeded:
            if txn.retried and _holds(resp, value) and _mod_revision(resp) > expected_revision:
                return self._with_revision(info, obj, _mod_revision(resp))  # our own retried write
            raise self._conflict(info, obj, resp)
        return self._with_revision(info, obj, int(resp.header.revision))

    async def get_many(self, info: KindInfo, names: Sequence[tuple[str, str]]) -> list[Message | None]:
        """Read several objects, given as (namespace, name), concurrently; None for each that does not exist
        or cannot be decrypted. Not one read-only transaction: etcd before 3.5.5 panics when a read-only
        transaction's client gives up on it (etcd-io/etcd#14110), and under load clients do. The reads need
        not share a revision: whatever is written from them is guarded by each key's own revision."""
        kv = self.client.kv

        async def one(namespace: str, name: str) -> Message | None:
            key = object_key(info, namespace, name)
            resp = await self.client.call(lambda t: kv.get(key, timeout=t), f"get {key}")
            if not resp.kvs:
                return None
            try:
                return self.decode(info, key, resp.kvs[0].value, resp.kvs[0].mod_revision)
            except EncryptionError as err:
                log.warning("%s %s cannot be read: %s", info.kind, key, err)
                return None

        return list(await asyncio.gather(*(one(ns, name) for ns, name in names)))

    async def update_many(self, info: KindInfo, writes: Sequence[tuple[Message, int]]) -> list[Message | None]:
        """Replace several objects in one transaction, each only if its key's mod_revision is still the one
        paired with it. Returns, in order, each object as stored (all share the transaction's revision) or
        None for those whose guard failed; the others are written without them (a failed guard makes etcd
        refuse the whole transaction, so it is tried again without the failed ones). No lease: for kinds
        without a time to live."""
        if len(writes) > MAX_TXN_OPS:
            raise ValueError(f"update_many: {len(writes)} objects, at most {MAX_TXN_OPS}")
        kv = self.client.kv
        pending = []
        for obj, expected in writes:
            key = object_key(info, meta(obj).namespace, meta(obj).name)
            pending.append((key, self.encode(info, key, obj), expected))
        results: list[Message | None] = [None] * len(writes)
        todo = list(range(len(writes)))
        while todo:
            batch = [pending[i] for i in todo]
            txn = _Attempts(
                lambda t, batch=batch: kv.txn(  # type: ignore[misc]
                    compare=[_mod_revision_equals(key, expected) for key, _, expected in batch],
                    success=[kv.txn_op_put(key, value) for key, value, _ in batch],
                    failure=[kv.txn_op_get(key) for key, _, _ in batch],
                    timeout=t,
                )
            )
            resp = await self.client.call(txn, f"update {len(batch)} {info.plural}")
            if resp.succeeded:
                for i in todo:
                    results[i] = self._with_revision(info, writes[i][0], int(resp.header.revision))
                return results
            still = []
            for i, answer in zip(todo, resp.responses, strict=True):
                kvs = answer.response_range.kvs
                _, value, expected = pending[i]
                if kvs and int(kvs[0].mod_revision) == expected:
                    still.append(i)  # its guard holds: write it with the others that do
                elif txn.retried and kvs and kvs[0].value == value:
                    results[i] = self._with_revision(info, writes[i][0], int(kvs[0].mod_revision))  # our own write
            if len(still) == len(todo):
                raise ConflictError(f"update {len(batch)} {info.plural}: the write raced another; try again")
            todo = still
        return results

    async def delete(self, info: KindInfo, obj: Message, expected_revision: int, *, release: Sequence[str] = ()) -> int:
        """Delete an object if its key's mod_revision is still ``expected_revision`` (and, in the same
        transaction, the claims it held); returns the revision."""
        kv = self.client.kv
        m = meta(obj)
        key = object_key(info, m.namespace, m.name)
        resp = await self.client.call(
            lambda t: kv.txn(
                compare=[_mod_revision_equals(key, expected_revision)],
                success=[kv.txn_op_delete(key), *(kv.txn_op_delete(claim_key(c)) for c in release)],
                failure=[kv.txn_op_get(key)],
                timeout=t,
            ),
            f"delete {key}",
        )
        if not resp.succeeded:
            raise self._conflict(info, obj, resp)
        return int(resp.header.revision)

    @staticmethod
    def _conflict(info: KindInfo, obj: Message, resp: object) -> Exception:
        responses = resp.responses  # type: ignore[attr-defined]
        if not responses or not responses[0].response_range.kvs:
            return NotFoundError(f"{describe(obj)} not found")
        current = responses[0].response_range.kvs[0].mod_revision
        return ConflictError(
            f"Operation cannot be fulfilled on {describe(obj)}: the object has been modified "
            f"(resourceVersion {meta(obj).resource_version or '?'} is stale, current is {current}); "
            "read the latest version and try again"
        )

    async def list(
        self,
        info: KindInfo,
        namespace: str = "",
        *,
        revision: int = 0,
        start_key: str = "",
        limit: int = 0,
    ) -> StoredList:
        """Read objects of a kind in key order at ``revision`` (0: now), from ``start_key`` on, at most
        ``limit`` of them (0: all). A read too large for one etcd response returns fewer (``more`` set).

        A compacted ``revision`` raises ``GoneError``.
        """
        prefix = kind_prefix(info, namespace)
        start = start_key or prefix
        end = prefix_end(prefix)
        while True:
            try:
                resp = await self.client.call(
                    lambda t, limit=limit: self.client.kv.get(  # type: ignore[misc]
                        start, range_end=end, revision=revision, limit=limit, timeout=t
                    ),
                    f"list {prefix}",
                )
                break
            except grpc.aio.AioRpcError as err:
                # Larger than the client's receive limit (64 MiB): fewer keys per read; the caller pages on.
                if err.code() != grpc.StatusCode.RESOURCE_EXHAUSTED or limit == 1:
                    raise
                limit = max(1, (limit or LIST_PAGE) // 4)
        items: list[tuple[str, Message]] = []
        skipped: list[str] = []
        for kv in resp.kvs:
            key = kv.key.decode()
            try:
                items.append((key, self.decode(info, key, kv.value, kv.mod_revision)))
            except EncryptionError as err:
                # One value no configured key decrypts must not stop a List (or an API server's start).
                log.error("skipping %s: %s", key, err)
                skipped.append(key)
                self.undecryptable += 1
        # etcd's header names the current revision even for a read in the past.
        read_at = revision or int(resp.header.revision)
        remaining = max(0, int(resp.count) - len(resp.kvs))
        return StoredList(
            items, read_at, bool(resp.more), remaining, skipped, (resp.kvs[-1].key.decode() if resp.kvs else "")
        )

    async def unchanged_between(self, info: KindInfo, keys: int, after: int, until: int) -> bool:
        """Whether no object of a kind was created, changed or deleted in revisions ``(after, until]``,
        given that ``keys`` objects existed at ``after`` (one keys-only read at ``until``)."""
        prefix = kind_prefix(info)
        resp = await self.client.call(
            lambda t: self.client.kv.get(
                prefix, range_end=prefix_end(prefix), revision=until, keys_only=True, timeout=t
            ),
            f"check {prefix}",
        )
        # A create or change shows as a newer mod_revision; a delete (without a create) as a smaller count.
        return len(resp.kvs) == keys and all(kv.mod_revision <= after for kv in resp.kvs)

    async def key_summary(self, info: KindInfo, revision: int) -> tuple[int, int]:
        """(how many objects of a kind exist, their newest mod_revision) at ``revision`` (a keys-only read)."""
        prefix = kind_prefix(info)
        resp = await self.client.call(
            lambda t: self.client.kv.get(
                prefix, range_end=prefix_end(prefix), revision=revision, keys_only=True, timeout=t
            ),
            f"summarize {prefix}",
        )
        return len(resp.kvs), max((int(kv.mod_revision) for kv in resp.kvs), default=0)

    async def compact(self, revision: int) -> None:
        """Discard history before ``revision`` (used by operators and tests)."""
        await self.client.call(lambda t: self.client.kv.compact(revision, physical=True, timeout=t), "compact")

    def watch(self, info: KindInfo, start_revision: int) -> EtcdWatch:
        """A watch over every object of a kind from ``start_revision`` (inclusive)."""
        return EtcdWatch(self.client.watch_channel, kind_prefix(info), start_revision)


class _Attempts:
    """Counts the attempts of a retried etcd operation: an ambiguous failure matters only after a retry."""

    def __init__(self, op: Callable[[float], Awaitable[TxnResponse]]) -> None:
        self._op = op
        self.count = 0

    def __call__(self, timeout: float) -> Awaitable[TxnResponse]:
        self.count += 1
        return self._op(timeout)

    @property
    def retried(self) -> bool:
        """True once a second attempt was made."""
        return self.count > 1


def _holds(resp: TxnResponse, value: bytes) -> bool:
    """Whether a failed txn's read-back shows ``value`` stored."""
    kvs = resp.responses[0].response_range.kvs if resp.responses else []
    return bool(kvs) and kvs[0].value == value


def _mod_revision(resp: TxnResponse) -> int:
    return int(resp.responses[0].response_range.kvs[0].mod_revision)


def _mod_revision_equals(key: str, revision: int) -> Compare:
    return Compare(result=Compare.EQUAL, target=Compare.MOD, key=key.encode(), mod_revision=revision)
