"""Owner references: who controls an object, and claiming (adopting orphans, releasing strays).

A controller owns the objects whose ``ownerReferences`` name it with ``controller: true``. When it syncs it
*claims* candidates (client-go's ``ControllerRefManager``): an orphan that matches its selector is adopted,
an object it owns that no longer matches is released. Both are merge patches guarded by the object's
resourceVersion, so two controllers can never both adopt the same object.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from google.protobuf import json_format
from google.protobuf.message import Message

from controlplane.api import kinds
from controlplane.api.errors import ConflictError, NotFoundError
from controlplane.api.objects import meta
from controlplane.api.pb import meta_pb2
from controlplane.client.client import ApiClient

log = logging.getLogger(__name__)

M = TypeVar("M", bound=Message)


def controller_of(obj: Message) -> meta_pb2.OwnerReference | None:
    """The owner reference with ``controller: true``, if any."""
    for ref in meta(obj).owner_references:
        if ref.controller:
            return ref
    return None


def controller_ref(owner: Message) -> meta_pb2.OwnerReference:
    """A controlling owner reference to ``owner`` (blocking its foreground deletion, as Kubernetes does)."""
    info = kinds.of_message(owner)
    m = meta(owner)
    return meta_pb2.OwnerReference(
        api_version=info.api_version, kind=info.kind, name=m.name, uid=m.uid, controller=True, block_owner_deletion=True
    )


def is_controlled_by(obj: Message, owner: Message) -> bool:
    """Whether ``owner`` is ``obj``'s controller."""
    ref = controller_of(obj)
    return ref is not None and ref.uid == meta(owner).uid


def refs_json(refs: Iterable[meta_pb2.OwnerReference]) -> list[dict[str, Any]]:
    """Owner references as manifest JSON (for merge patches, which replace the whole list)."""
    return [json_format.MessageToDict(r) for r in refs]


async def _patch_refs(client: ApiClient, obj: Message, refs: list[meta_pb2.OwnerReference]) -> Message | None:
    m = meta(obj)
    patch = {"metadata": {"ownerReferences": refs_json(refs), "resourceVersion": m.resource_version}}
    try:
        out: Message = await client.patch(type(obj), m.name, patch, m.namespace)
        return out
    except (ConflictError, NotFoundError):
        return None  # changed or gone meanwhile: the next sync sees the new state


async def claim(
    client: ApiClient,
    owner: Message,
    candidates: Iterable[M],
    matches: Callable[[M], bool],
) -> list[M]:
    """The candidates ``owner`` controls after adopting matching orphans and releasing non-matching ones."""
    owner_meta = meta(owner)
    owner_deleting = owner_meta.HasField("deletion_timestamp")
    owned: list[M] = []
    for obj in candidates:
        ref = controller_of(obj)
        m = meta(obj)
        if ref is not None:
            if ref.uid != owner_meta.uid:
                continue  # someone else's
            if matches(obj):
                owned.append(obj)
            elif not m.HasField("deletion_timestamp"):
                kept = [r for r in m.owner_references if r.uid != owner_meta.uid]
                await _patch_refs(client, obj, kept)  # released: labels no longer match
            continue
        if owner_deleting or m.HasField("deletion_timestamp") or not matches(obj):
            continue
        adopted = await _patch_refs(client, obj, [*m.owner_references, controller_ref(owner)])
        if adopted is not None:
            owned.append(adopted)  # type: ignore[arg-type]
    return owned


def orphans_by_namespace(obj: Message) -> list[str]:
    """Index function: the namespace of an object no controller owns (candidates for adoption)."""
    return [] if controller_of(obj) is not None else [meta(obj).namespace]


def claim_candidates(store: Any, owner: Message) -> list[Any]:
    """What ``owner`` may claim from an informer's store: what it owns plus its namespace's orphans — without
    scanning every object of the namespace (the ``owner`` and ``orphans`` indexes)."""
    if "orphans" not in store.indexers:
        store.add_indexer("orphans", orphans_by_namespace)
    m = meta(owner)
    return [*store.by_index("owner", m.uid), *store.by_index("orphans", m.namespace)]
