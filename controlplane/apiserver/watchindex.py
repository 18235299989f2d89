"""Watchers indexed by what their selectors pin down, so an event is offered only to watchers that may
select it — with one watch per node, dispatch costs what the interested watchers cost, not the cluster size.

A watcher is filed under the most selective exact term of its filter: an object name (in a namespace),
else an indexed field value (``spec.nodeName`` for Pods, ``involvedObject.uid`` for Events), else its
namespace, else "everything". An event is looked up under every key of its new *and* its previous object,
so a pod moved off a node still reaches that node's watcher (which turns it into a DELETED). The index only
narrows: each candidate still applies its whole filter.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Generic, Protocol, TypeVar

from google.protobuf.message import Message

from controlplane.api.kinds import KindInfo
from controlplane.api.objects import meta
from controlplane.api.selectors import FieldGetter, indexed_fields

_EVERYTHING: tuple[str] = ("*",)


class Selective(Protocol):
    """What the index needs of a watcher's filter."""

    @property
    def namespace(self) -> str: ...

    def exact_field(self, field: str) -> str | None: ...


class HasFilter(Protocol):
    @property
    def filter(self) -> Selective: ...


W = TypeVar("W", bound=HasFilter)


class WatcherIndex(Generic[W]):
    """Watchers of one kind, by index key; not thread-safe (the watch cache's loop owns it)."""

    def __init__(self, info: KindInfo) -> None:
        self.info = info
        self._fields: dict[str, FieldGetter] = indexed_fields(info.kind)
        self._buckets: dict[Hashable, set[W]] = {}
        self._key_of: dict[W, Hashable] = {}

    def __len__(self) -> int:
        return len(self._key_of)

    def all(self) -> list[W]:
        """Every watcher (a copy: closing one while iterating is fine)."""
        return list(self._key_of)

    def _watcher_key(self, flt: Selective) -> Hashable:
        name = flt.exact_field("metadata.name")
        namespace = flt.namespace or flt.exact_field("metadata.namespace") or ""
        if name is not None and (namespace or not self.info.namespaced):
            return ("name", namespace, name)
        for field in self._fields:
            value = flt.exact_field(field)
            if value is not None:
                return (field, value)
        if namespace:
            return ("ns", namespace)
        return _EVERYTHING

    def _object_keys(self, obj: Message) -> list[Hashable]:
        m = meta(obj)
        keys: list[Hashable] = [("name", m.namespace, m.name), ("ns", m.namespace)]
        keys.extend((field, getter(obj)) for field, getter in self._fields.items())
        return keys

    def add(self, watcher: W) -> None:
        """File a watcher under its filter's key."""
        key = self._watcher_key(watcher.filter)
        self._key_of[watcher] = key
        self._buckets.setdefault(key, set()).add(watcher)

    def discard(self, watcher: W) -> None:
        """Forget a watcher (no error if it is not filed)."""
        key = self._key_of.pop(watcher, None)
        if key is None:
            return
        bucket = self._buckets.get(key)
        if bucket is not None:
            bucket.discard(watcher)
            if not bucket:
                del self._buckets[key]

    def interested(self, obj: Message, prev: Message | None) -> list[W]:
        """The watchers that may select ``obj`` or ``prev`` (each once)."""
        found: set[W] = set(self._buckets.get(_EVERYTHING, ()))
        for o in (obj, prev):
            if o is None:
                continue
            for key in self._object_keys(o):
                bucket = self._buckets.get(key)
                if bucket:
                    found.update(bucket)
        return list(found)
