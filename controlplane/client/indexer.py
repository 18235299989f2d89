"""A thread-free local object cache keyed by ``namespace/name`` with secondary indexes.

Standard indexes: ``namespace``, ``nodeName`` (Pods' ``spec.nodeName``), ``owner`` (every owner uid);
add your own with ``IndexFunc``s.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Generic, TypeVar

from google.protobuf.message import Message

from controlplane.api.objects import meta

T = TypeVar("T", bound=Message)
IndexFunc = Callable[[Message], Iterable[str]]


def object_key(obj: Message) -> str:
    """``namespace/name``, or ``name`` for cluster-scoped objects (client-go's MetaNamespaceKeyFunc)."""
    m = meta(obj)
    return f"{m.namespace}/{m.name}" if m.namespace else m.name


def split_key(key: str) -> tuple[str, str]:
    """(namespace, name) of a key."""
    namespace, _, name = key.rpartition("/")
    return namespace, name


def by_namespace(obj: Message) -> list[str]:
    """Index: the object's namespace."""
    return [meta(obj).namespace]


def by_node_name(obj: Message) -> list[str]:
    """Index: a Pod's ``spec.nodeName`` (nothing for unscheduled pods or other kinds)."""
    spec = getattr(obj, "spec", None)
    node = getattr(spec, "node_name", "") if spec is not None else ""
    return [node] if node else []


def by_owner_uid(obj: Message) -> list[str]:
    """Index: the uid of every owner."""
    return [ref.uid for ref in meta(obj).owner_references]


DEFAULT_INDEXERS: dict[str, IndexFunc] = {"namespace": by_namespace, "nodeName": by_node_name, "owner": by_owner_uid}


class Indexer(Generic[T]):
    """Objects by key, plus index name -> index value -> keys."""

    def __init__(self, indexers: dict[str, IndexFunc] | None = None) -> None:
        self.indexers: dict[str, IndexFunc] = {**DEFAULT_INDEXERS, **(indexers or {})}
        self._items: dict[str, T] = {}
        self._indices: dict[str, dict[str, set[str]]] = {name: {} for name in self.indexers}

    def add_indexer(self, name: str, func: IndexFunc) -> None:
        """Add an index (existing objects are indexed at once)."""
        self.indexers[name] = func
        self._indices[name] = {}
        for key, obj in self._items.items():
            for value in func(obj):
                self._indices[name].setdefault(value, set()).add(key)

    def _unindex(self, key: str, obj: T) -> None:
        for name, func in self.indexers.items():
            for value in func(obj):
                keys = self._indices[name].get(value)
                if keys is not None:
                    keys.discard(key)
                    if not keys:
                        del self._indices[name][value]

    def _index(self, key: str, obj: T) -> None:
        for name, func in self.indexers.items():
            for value in func(obj):
                self._indices[name].setdefault(value, set()).add(key)

    def put(self, obj: T) -> T | None:
        """Add or replace an object; returns the previous one."""
        key = object_key(obj)
        old = self._items.get(key)
        if old is not None:
            self._unindex(key, old)
        self._items[key] = obj
        self._index(key, obj)
        return old

    def remove(self, key: str) -> T | None:
        """Remove an object by key; returns it."""
        old = self._items.pop(key, None)
        if old is not None:
            self._unindex(key, old)
        return old

    def get(self, key: str) -> T | None:
        """The object with a key (a shared reference: copy it before changing it)."""
        return self._items.get(key)

    def get_by_name(self, namespace: str, name: str) -> T | None:
        """The object with a namespace and name."""
        return self._items.get(f"{namespace}/{name}" if namespace else name)

    def keys(self) -> list[str]:
        """Every key."""
        return list(self._items)

    def objects(self) -> list[T]:
        """Every object."""
        return list(self._items.values())

    def by_index(self, name: str, value: str) -> list[T]:
        """Objects whose index ``name`` has ``value`` (e.g. ``by_index("nodeName", "n1")``)."""
        if name not in self._indices:
            raise KeyError(f"no index named {name!r}; known: {', '.join(sorted(self._indices))}")
        return [self._items[k] for k in sorted(self._indices[name].get(value, ()))]

    def __len__(self) -> int:
        return len(self._items)
