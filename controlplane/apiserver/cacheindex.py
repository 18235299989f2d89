"""The objects of one kind in memory, indexed so that a List costs what it returns, not what the kind holds.

Buckets: every object by storage key; by namespace; by the value of each indexed field selector
(``selectors.indexed_fields``: ``spec.nodeName`` for Pods, ``involvedObject.uid`` for Events). A query picks
the smallest bucket its filter pins down (an exact ``metadata.name`` in a namespace is one key), then
filters and sorts only that bucket. Not thread-safe: the watch cache mutates it synchronously on its loop.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Protocol

from google.protobuf.message import Message

from controlplane.api.kinds import KindInfo
from controlplane.api.objects import meta
from controlplane.api.selectors import FieldGetter, indexed_fields
from controlplane.storage.keys import object_key


class Selection(Protocol):
    """What the index needs of a filter."""

    @property
    def namespace(self) -> str: ...

    def matches(self, obj: Message) -> bool: ...

    def exact_field(self, field: str) -> str | None: ...


class ObjectIndex:
    """Objects by key, with namespace and field-value buckets kept in step on every put and remove."""

    def __init__(self, info: KindInfo) -> None:
        self.info = info
        self._fields: dict[str, FieldGetter] = indexed_fields(info.kind)
        self._all: dict[str, Message] = {}
        self._by_namespace: dict[str, dict[str, Message]] = {}
        self._by_field: dict[str, dict[str, dict[str, Message]]] = {name: {} for name in self._fields}

    def __len__(self) -> int:
        return len(self._all)

    def get(self, key: str) -> Message | None:
        """One object by storage key."""
        return self._all.get(key)

    def items(self) -> Iterator[tuple[str, Message]]:
        """Every (key, object), unordered."""
        return iter(self._all.items())

    def put(self, key: str, obj: Message) -> None:
        """Add or replace an object (its old buckets are left if its namespace or fields changed)."""
        if key in self._all:
            self.remove(key)
        self._all[key] = obj
        self._by_namespace.setdefault(meta(obj).namespace, {})[key] = obj
        for name, getter in self._fields.items():
            self._by_field[name].setdefault(getter(obj), {})[key] = obj

    def remove(self, key: str) -> Message | None:
        """Drop an object from every bucket; the object, or None if it was not there."""
        obj = self._all.pop(key, None)
        if obj is None:
            return None
        _drop(self._by_namespace, meta(obj).namespace, key)
        for name, getter in self._fields.items():
            _drop(self._by_field[name], getter(obj), key)
        return obj

    def replace_all(self, objects: Mapping[str, Message]) -> None:
        """Forget everything and hold exactly ``objects`` (after a relist)."""
        self._all.clear()
        self._by_namespace.clear()
        for buckets in self._by_field.values():
            buckets.clear()
        for key, obj in objects.items():
            self.put(key, obj)

    def candidates(self, flt: Selection) -> Mapping[str, Message]:
        """The smallest bucket that holds every object ``flt`` can select (a superset of the answer)."""
        name = flt.exact_field("metadata.name")
        if name is not None and (flt.namespace or not self.info.namespaced):
            key = object_key(self.info, flt.namespace, name)
            obj = self._all.get(key)
            return {key: obj} if obj is not None else {}
        best: Mapping[str, Message] = self._all
        namespace = flt.namespace or flt.exact_field("metadata.namespace")
        if namespace is not None and namespace:
            best = self._by_namespace.get(namespace, {})
        for field in self._fields:
            value = flt.exact_field(field)
            if value is not None:
                bucket = self._by_field[field].get(value, {})
                if len(bucket) < len(best):
                    best = bucket
        return best

    def select(self, flt: Selection, *, ordered: bool = True) -> list[tuple[str, Message]]:
        """The selected (key, object) pairs, in key order unless ``ordered`` is False."""
        bucket = self.candidates(flt)
        pairs = sorted(bucket.items()) if ordered else list(bucket.items())
        return [(key, obj) for key, obj in pairs if flt.matches(obj)]


def _drop(buckets: dict[str, dict[str, Message]], value: str, key: str) -> None:
    bucket = buckets.get(value)
    if bucket is not None:
        bucket.pop(key, None)
        if not bucket:
            del buckets[value]
