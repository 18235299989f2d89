"""Garbage collector: ownerReferences decide what goes when an owner goes.

* Background (default): the owner is removed at once; its dependents, now pointing at an owner that no
  longer exists, are deleted here.
* Foreground: the owner stays (``foregroundDeletion`` finalizer, deletionTimestamp set) while its
  dependents are deleted (themselves in the foreground); the finalizer is removed once none is left.
* Orphan: the ``orphan`` finalizer; dependents lose their reference to the owner, then the finalizer goes.

An owner missing from the caches is confirmed missing with a read from the API (matching uid) before
anything is deleted, so a cache that lags a fresh owner cannot cost its dependents.

Keys are ``Kind|namespace/name``.
"""

from __future__ import annotations

import contextlib
import logging
from typing import ClassVar

from google.protobuf.message import Message

from controlplane.api import kinds
from controlplane.api.errors import ConflictError, NotFoundError
from controlplane.api.objects import meta
from controlplane.api.pb import meta_pb2
from controlplane.client.events import NORMAL
from controlplane.client.indexer import object_key
from controlplane.client.informer import Informer
from controlplane.controllers.base import Controller, ControllerContext
from controlplane.controllers.ownership import refs_json

log = logging.getLogger(__name__)

ORPHAN = "orphan"
FOREGROUND = "foregroundDeletion"
UNTRACKED = ("Event", "Lease")
"""Kinds never owned and written at a high rate: watching them would cost more than it could collect."""
TRACKED: tuple[type[Message], ...] = tuple(k.message for k in kinds.KINDS if k.kind not in UNTRACKED)
"""Every other kind, as owner and as dependent (as Kubernetes' collector watches every resource): a new
kind's objects (a CronJob's Jobs, a StatefulSet's pods, revisions and claims) are collected without a list to
keep up to date here."""


def _served(ref: meta_pb2.OwnerReference) -> bool:
    """Whether the owner's kind (and API group, when the reference names one) is a kind of this cluster."""
    try:
        info = kinds.lookup(ref.kind)
    except NotFoundError:
        return False
    return not ref.api_version or ref.api_version == info.api_version


def _uid(obj: Message) -> list[str]:
    return [meta(obj).uid]


class GarbageCollector(Controller):
    """Deletes dependents of deleted owners and carries out foreground and orphan deletion."""

    name: ClassVar[str] = "garbagecollector"
    default_workers = 5

    def __init__(self, ctx: ControllerContext) -> None:
        super().__init__(ctx)
        self.informers: dict[str, Informer[Message]] = {}
        for kind in TRACKED:
            inf: Informer[Message] = ctx.informers.informer(kind)
            if "uid" not in inf.store.indexers:
                inf.store.add_indexer("uid", _uid)
            info = kinds.of_message(kind())
            self.informers[info.kind] = inf
            inf.add_event_handler(self._changed, self._updated, self._deleted)

    @staticmethod
    def _key(obj: Message) -> str:
        return f"{kinds.of_message(obj).kind}|{object_key(obj)}"

    def _dependents(self, uid: str) -> list[Message]:
        return [d for inf in self.informers.values() for d in inf.store.by_index("owner", uid)]

    def _by_uid(self, kind: str, uid: str) -> Message | None:
        inf = self.informers.get(kind)
        if inf is None:
            return None
        found = inf.store.by_index("uid", uid)
        return found[0] if found else None

    def _changed(self, obj: Message) -> None:
        m = meta(obj)
        if m.owner_references or (m.HasField("deletion_timestamp") and {ORPHAN, FOREGROUND} & set(m.finalizers)):
            self.queue.add(self._key(obj))

    def _updated(self, old: Message, new: Message) -> None:
        o, n = meta(old), meta(new)
        # Status churn changes nothing here: only references, deletion and finalizers do.
        if (
            o.owner_references != n.owner_references
            or o.HasField("deletion_timestamp") != n.HasField("deletion_timestamp")
            or o.finalizers != n.finalizers
        ):
            self._changed(new)
            self._owners_waiting(new)

    def _deleted(self, obj: Message) -> None:
        for d in self._dependents(meta(obj).uid):
            self.queue.add(self._key(d))
        self._owners_waiting(obj)

    def _owners_waiting(self, obj: Message) -> None:
        """Owners in foreground deletion wait for this object: let them look again."""
        for ref in meta(obj).owner_references:
            owner = self._by_uid(ref.kind, ref.uid)
            if owner is not None and FOREGROUND in meta(owner).finalizers:
                self.queue.add(self._key(owner))

    # ----------------------------------------------------------- reconcile

    async def reconcile(self, key: str) -> None:
        kind, _, okey = key.partition("|")
        inf = self.informers.get(kind)
        obj = inf.store.get(okey) if inf is not None else None
        if obj is None:
            return
        m = meta(obj)
        if m.HasField("deletion_timestamp"):
            if ORPHAN in m.finalizers:
                await self._orphan_dependents(obj)
            elif FOREGROUND in m.finalizers:
                await self._delete_dependents_first(obj)
            return
        if m.owner_references:
            await self._check_owners(obj)

    async def _orphan_dependents(self, owner: Message) -> None:
        uid = meta(owner).uid
        for d in self._dependents(uid):
            dm = meta(d)
            kept = [r for r in dm.owner_references if r.uid != uid]
            patch = {"metadata": {"ownerReferences": refs_json(kept), "resourceVersion": dm.resource_version}}
            with contextlib.suppress(NotFoundError):
                await self.client.patch(type(d), dm.name, patch, dm.namespace)  # conflict: retried by the queue
        await self._remove_finalizer(owner, ORPHAN)

    async def _delete_dependents_first(self, owner: Message) -> None:
        dependents = self._dependents(meta(owner).uid)
        for d in dependents:
            dm = meta(d)
            if dm.HasField("deletion_timestamp"):
                continue
            with contextlib.suppress(NotFoundError):
                await self.client.delete(type(d), dm.name, dm.namespace, uid=dm.uid, propagation_policy="Foreground")
        if not dependents:
            await self._remove_finalizer(owner, FOREGROUND)

    async def _remove_finalizer(self, obj: Message, finalizer: str) -> None:
        m = meta(obj)
        left = [f for f in m.finalizers if f != finalizer]
        patch = {"metadata": {"finalizers": left, "resourceVersion": m.resource_version}}
        with contextlib.suppress(NotFoundError):
            await self.client.patch(type(obj), m.name, patch, m.namespace)

    async def _owner_exists(self, obj: Message, ref: meta_pb2.OwnerReference) -> Message | None:
        cached = self._by_uid(ref.kind, ref.uid)
        if cached is not None:
            return cached
        info = kinds.lookup(ref.kind)
        namespace = meta(obj).namespace if info.namespaced else ""
        try:
            live = await self.client.get(info.message, ref.name, namespace)
        except NotFoundError:
            return None
        return live if meta(live).uid == ref.uid else None

    async def _check_owners(self, obj: Message) -> None:
        m = meta(obj)
        dangling: list[meta_pb2.OwnerReference] = []
        foreground_owner = False
        for ref in m.owner_references:
            if not _served(ref):
                # A kind this cluster does not serve (or one of the same name in another API group): its
                # owner may well exist elsewhere, so the reference is never taken for a dangling one.
                log.debug(
                    "%s: owner %s %s is of a kind not served here; left alone", self._key(obj), ref.kind, ref.name
                )
                continue
            owner = await self._owner_exists(obj, ref)
            if owner is None:
                dangling.append(ref)
            elif meta(owner).HasField("deletion_timestamp") and FOREGROUND in meta(owner).finalizers:
                foreground_owner = True
        if foreground_owner:
            with contextlib.suppress(NotFoundError):
                await self.client.delete(type(obj), m.name, m.namespace, uid=m.uid, propagation_policy="Foreground")
            return
        if not dangling:
            return
        if len(dangling) == len(m.owner_references):
            with contextlib.suppress(NotFoundError, ConflictError):
                await self.client.delete(type(obj), m.name, m.namespace, uid=m.uid, propagation_policy="Background")
                owner = dangling[0]
                self.recorder.event(
                    obj, NORMAL, "GarbageCollected", f"deleted: its owner {owner.kind} {owner.name} no longer exists"
                )
            return
        gone = {r.uid for r in dangling}
        kept = [r for r in m.owner_references if r.uid not in gone]
        patch = {"metadata": {"ownerReferences": refs_json(kept), "resourceVersion": m.resource_version}}
        with contextlib.suppress(NotFoundError):
            await self.client.patch(type(obj), m.name, patch, m.namespace)
