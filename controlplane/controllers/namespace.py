"""Namespace controller: a Namespace being deleted (phase Terminating; the API refuses new objects in it)
is emptied — every namespaced object deleted, pods gracefully — and then removed.

reconcile(name):  not terminating ──> nothing;  objects left ──> delete them, look again in a second;
                  empty ──> delete the Namespace (the API server removes an empty terminating namespace).
"""

from __future__ import annotations

import contextlib
from typing import ClassVar

from controlplane.api import kinds
from controlplane.api.errors import NotFoundError
from controlplane.api.objects import meta
from controlplane.api.pb import core_pb2
from controlplane.client.events import NORMAL
from controlplane.controllers.base import Controller, ControllerContext

RECHECK_SECONDS = 1.0


class NamespaceController(Controller):
    """Empties and removes deleted Namespaces."""

    name: ClassVar[str] = "namespace"
    default_workers = 2

    def __init__(self, ctx: ControllerContext) -> None:
        super().__init__(ctx)
        self.namespaces = ctx.informers.informer(core_pb2.Namespace)
        self.namespaces.add_event_handler(self.enqueue, lambda old, new: self.enqueue(new), None)

    async def reconcile(self, key: str) -> None:
        ns = self.namespaces.store.get(key)
        if ns is None or not ns.metadata.HasField("deletion_timestamp"):
            return
        remaining = 0
        for info in kinds.KINDS:
            if not info.namespaced:
                continue
            # A consistent list from the API, not a cache: deciding "empty" on stale data would lose objects.
            items = (await self.client.list(info.message, key)).items
            for obj in items:
                remaining += 1
                m = meta(obj)
                if m.HasField("deletion_timestamp"):
                    continue  # already going (a pod finishing its grace period, a finalizer at work)
                with contextlib.suppress(NotFoundError):
                    await self.client.delete(info.message, m.name, key, uid=m.uid)
        if remaining:
            self.queue.add_after(key, RECHECK_SECONDS)
            return
        with contextlib.suppress(NotFoundError):
            _, removed = await self.client.delete(core_pb2.Namespace, key, uid=ns.metadata.uid)
            if not removed:
                self.queue.add_after(key, RECHECK_SECONDS)  # the API server's cache has not caught up yet
                return
        self.recorder.event(ns, NORMAL, "NamespaceDeleted", f"namespace {key} and everything in it deleted")
