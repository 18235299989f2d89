"""Pod event handlers shared by the controllers that own pods (ReplicaSet, Job, DaemonSet).

Each maps a pod to its controlling owner's key (the owner must still exist with the same uid), marks the
owner's expectations observed (a creation on add; a deletion once the pod is being deleted or gone), and
queues the owner. A pod that changes owner queues both; an orphan queues whoever ``orphan_keys`` names
(owners that may adopt it).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from controlplane.api.pb import core_pb2
from controlplane.client.informer import Informer
from controlplane.client.workqueue import WorkQueue
from controlplane.controllers.expectations import Expectations
from controlplane.controllers.ownership import controller_of


class OwnedPodEvents:
    """``added`` / ``updated`` / ``deleted`` for a pod informer, on behalf of owners of one kind."""

    def __init__(
        self,
        owners: Informer[Any],
        kind: str,
        expectations: Expectations,
        queue: WorkQueue[str],
        orphan_keys: Callable[[core_pb2.Pod], list[str]] | None = None,
    ) -> None:
        self.owners = owners
        self.kind = kind
        self.expectations = expectations
        self.queue = queue
        self.orphan_keys = orphan_keys

    def owner_key(self, pod: core_pb2.Pod) -> str | None:
        """``namespace/name`` of the pod's live controlling owner of this kind, if any."""
        ref = controller_of(pod)
        if ref is None or ref.kind != self.kind:
            return None
        key = f"{pod.metadata.namespace}/{ref.name}"
        owner = self.owners.store.get(key)
        return key if owner is not None and owner.metadata.uid == ref.uid else None

    def _orphan(self, pod: core_pb2.Pod) -> None:
        if self.orphan_keys is not None and controller_of(pod) is None:
            for key in self.orphan_keys(pod):
                self.queue.add(key)

    def added(self, pod: core_pb2.Pod) -> None:
        """A pod appeared in the cache."""
        key = self.owner_key(pod)
        if key is None:
            self._orphan(pod)
            return
        self.expectations.creation_observed(key)
        if pod.metadata.HasField("deletion_timestamp"):
            self.expectations.deletion_observed(key, pod.metadata.uid)
        self.queue.add(key)

    def updated(self, old: core_pb2.Pod, new: core_pb2.Pod) -> None:
        """A pod changed (status, labels, owner, deletion)."""
        key = self.owner_key(new)
        old_key = self.owner_key(old)
        if old_key is not None and old_key != key:
            self.queue.add(old_key)
        if key is None:
            self._orphan(new)
            return
        if new.metadata.HasField("deletion_timestamp"):
            self.expectations.deletion_observed(key, new.metadata.uid)
        self.queue.add(key)

    def deleted(self, pod: core_pb2.Pod) -> None:
        """A pod left the cache."""
        key = self.owner_key(pod)
        if key is not None:
            self.expectations.deletion_observed(key, pod.metadata.uid)
            self.queue.add(key)
