"""VolumeBinding (filter): a pod's persistent volume claims can be used on the node.

- a claim bound to a volume: the volume's node affinity must admit the node (a local volume's data is
  there and nowhere else);
- a claim of class ``local`` not bound yet: if the scheduler already chose a node for it
  (``volume.kubernetes.io/selected-node``), only that node; otherwise a node with room for it — its
  ``navarch.io/local-storage`` capacity minus the volumes it holds and the claims chosen for it;
- a claim of another class not bound yet: no node (the volume controller binds such claims on their own;
  the pod is retried when the claim changes);
- a claim that does not exist: no node.

None of these is solved by evicting pods, so every rejection is UnschedulableAndUnresolvable (preemption
leaves such nodes alone).
"""

from __future__ import annotations

from collections import defaultdict
from typing import ClassVar

from controlplane.api.pb import core_pb2
from controlplane.api.quantity import parse_quantity
from controlplane.api.volumes import (
    LOCAL_CLASS,
    LOCAL_STORAGE,
    SELECTED_NODE,
    affinity_names,
    capacity_bytes,
    requested_bytes,
)
from controlplane.scheduler.framework import SUCCESS, CycleState, NodeInfo, Status, unresolvable


def _claim_names(pod: core_pb2.Pod) -> list[str]:
    return [v.persistent_volume_claim.claim_name for v in pod.spec.volumes if v.HasField("persistent_volume_claim")]


def _used_local_storage(state: CycleState) -> dict[str, int]:
    """Bytes of local storage each node holds or has promised: its volumes, and unbound claims chosen for it."""
    used: dict[str, int] = defaultdict(int)
    snapshot = state.snapshot
    for pv in snapshot.volumes.values():
        if pv.spec.HasField("local"):
            for term in pv.spec.node_affinity.required.node_selector_terms:
                for f in term.match_fields:
                    if f.key == "metadata.name" and f.operator == "In" and f.values:
                        used[f.values[0]] += capacity_bytes(pv)
    for pvc in snapshot.claims.values():
        node = pvc.metadata.annotations.get(SELECTED_NODE, "")
        if node and not pvc.spec.volume_name:
            used[node] += requested_bytes(pvc)
    return used


def _room(node: NodeInfo) -> int:
    text = node.node.status.allocatable.get(LOCAL_STORAGE) or node.node.status.capacity.get(LOCAL_STORAGE, "0")
    try:
        return int(parse_quantity(text))
    except ValueError:
        return 0


class VolumeBinding:
    """Claims and volumes decide where a pod with persistent storage can run."""

    name: ClassVar[str] = "VolumeBinding"

    def applies(self, state: CycleState, pod: core_pb2.Pod) -> bool:
        """Only pods with persistentVolumeClaim volumes."""
        return bool(_claim_names(pod))

    def filter(self, state: CycleState, pod: core_pb2.Pod, node: NodeInfo) -> Status:
        """Reject the node if a claim cannot be used there."""
        snapshot = state.snapshot
        wanted = 0
        for name in _claim_names(pod):
            pvc = snapshot.claims.get(f"{pod.metadata.namespace}/{name}")
            if pvc is None or pvc.metadata.HasField("deletion_timestamp"):
                return unresolvable(f'persistentvolumeclaim "{name}" not found')
            if pvc.spec.volume_name:
                pv = snapshot.volumes.get(pvc.spec.volume_name)
                if pv is None:
                    return unresolvable(f'persistentvolume "{pvc.spec.volume_name}" not found')
                if not affinity_names(pv, node.name):
                    return unresolvable("node(s) had volume node affinity conflict")
                continue
            klass = pvc.spec.storage_class_name if pvc.spec.HasField("storage_class_name") else ""
            if klass != LOCAL_CLASS:
                return unresolvable("pod has unbound immediate PersistentVolumeClaims")
            selected = pvc.metadata.annotations.get(SELECTED_NODE, "")
            if selected:
                if selected != node.name:
                    return unresolvable("node(s) didn't match the node chosen for its volume")
                continue
            wanted += requested_bytes(pvc)
        if wanted:
            used: dict[str, int] = state.memo("local-storage-used", lambda: _used_local_storage(state))
            if _room(node) - used.get(node.name, 0) < wanted:
                return unresolvable("node(s) did not have enough free local storage")
        return SUCCESS
