"""What the control plane and the agents agree on about node-local persistent volumes.

A claim of storage class :data:`LOCAL_CLASS` waits for its first pod (Kubernetes' WaitForFirstConsumer):
the scheduler picks a node for the pod, writes it into the claim's :data:`SELECTED_NODE` annotation, and the
volume controller then makes a PersistentVolume on that node (``pvc-<claim uid>``, node affinity by
``metadata.name``) and binds the two. Nodes offer :data:`LOCAL_STORAGE` bytes of capacity for such volumes.
"""

from __future__ import annotations

from controlplane.api.pb import core_pb2
from controlplane.api.quantity import parse_quantity

LOCAL_CLASS = "local"
SELECTED_NODE = "volume.kubernetes.io/selected-node"
LOCAL_STORAGE = "navarch.io/local-storage"
"""The node capacity (bytes) its local persistent volumes may take together."""


def affinity_names(pv: core_pb2.PersistentVolume, node: str) -> bool:
    """Whether the volume's node affinity admits ``node`` (by ``metadata.name`` or the hostname label)."""
    for term in pv.spec.node_affinity.required.node_selector_terms:
        for field in term.match_fields:
            if field.key == "metadata.name" and field.operator == "In" and node in field.values:
                return True
        for expr in term.match_expressions:
            if expr.key == "kubernetes.io/hostname" and expr.operator == "In" and node in expr.values:
                return True
    return False


def requested_bytes(pvc: core_pb2.PersistentVolumeClaim) -> int:
    """The storage a claim asks for, in bytes (0 if unreadable: validation refuses that)."""
    try:
        return int(parse_quantity(pvc.spec.resources.requests.get("storage", "0")))
    except ValueError:
        return 0


def capacity_bytes(pv: core_pb2.PersistentVolume) -> int:
    """A volume's capacity in bytes."""
    try:
        return int(parse_quantity(pv.spec.capacity.get("storage", "0")))
    except ValueError:
        return 0
