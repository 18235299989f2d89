"""The node authorizer (Kubernetes' Node authorizer with NodeRestriction's spirit): an agent's certificate
(``system:node:<name>``, group ``system:nodes``) reaches only what its own node needs.

Allowed: read every Node, write its own Node (and status); its own Lease in ``navarch-node-lease``; list and
watch Pods only with ``fieldSelector=spec.nodeName=<name>``; read and delete Pods bound to it and write
their status (never the pod itself: not its labels, finalizers or owners); read the Secrets, ConfigMaps and
PersistentVolumeClaims those Pods reference, and the PersistentVolumes whose node affinity names it (or of a
name no volume has: its clean-up learns the volume is gone); read Services, Endpoints and Namespaces (the
node proxy); write Events. Anything else a node asks is denied outright, whatever RBAC says.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from google.protobuf.message import Message

from controlplane import pki
from controlplane.api import kinds, namespaces
from controlplane.api.errors import ApiError
from controlplane.api.pb import core_pb2
from controlplane.api.selectors import parse_field_selector
from controlplane.api.volumes import affinity_names
from controlplane.apiserver.authz import Attributes, Decision
from controlplane.apiserver.watchcache import Filter, WatchCache
from controlplane.storage.keys import object_key

_POD = kinds.lookup("Pod")
_PV = kinds.lookup("PersistentVolume")
LEASE_NAMESPACE = namespaces.NODE_LEASE
_READ = ("get", "list", "watch")
_WRITE_OWN = ("create", "get", "update", "patch", "delete")


def node_name_of(attrs: Attributes) -> str | None:
    """The node a caller is, if it is one."""
    user = attrs.user
    if user.in_group(pki.NODES_GROUP) and user.name.startswith(pki.NODE_USER_PREFIX):
        return user.name[len(pki.NODE_USER_PREFIX) :]
    return None


def referenced(pod: core_pb2.Pod, kind: str) -> set[str]:
    """Names of the Secrets (or ConfigMaps) a pod uses in env, envFrom and volumes."""
    names: set[str] = set()
    secret = kind == "Secret"
    for c in [*pod.spec.init_containers, *pod.spec.containers]:
        for env in c.env:
            ref = env.value_from.secret_key_ref if secret else env.value_from.config_map_key_ref
            if ref.name:
                names.add(ref.name)
        for src in c.env_from:
            name = src.secret_ref.name if secret else src.config_map_ref.name
            if name:
                names.add(name)
    for vol in pod.spec.volumes:
        name = vol.secret.secret_name if secret else vol.config_map.name
        if name:
            names.add(name)
    return names


class NodeAuthorizer:
    """Decides every request of a node; has no opinion about anyone else."""

    def __init__(
        self, caches: dict[str, WatchCache], fetch_pod: Callable[[str, str], Awaitable[Message]] | None = None
    ) -> None:
        self.caches = caches
        self.fetch_pod = fetch_pod

    async def _pod_node(self, namespace: str, name: str) -> str | None:
        pod = self.caches["Pod"].get(object_key(_POD, namespace, name))
        if pod is None and self.fetch_pod is not None:
            try:  # the cache may lag a pod bound a moment ago
                pod = await self.fetch_pod(namespace, name)
            except ApiError:
                return None
        return pod.spec.node_name if pod is not None else None  # type: ignore[attr-defined]

    async def authorize(self, attrs: Attributes) -> tuple[Decision, str]:
        """ALLOW or DENY for nodes; NO_OPINION for other users."""
        node = node_name_of(attrs)
        if node is None:
            return Decision.NO_OPINION, ""
        denied = Decision.DENY, f"node {node} may not do this"
        resource, verb = attrs.resource, attrs.verb
        if resource == "nodes" and attrs.subresource in ("", "status"):
            if verb in _READ or (verb in _WRITE_OWN and attrs.name == node):
                return Decision.ALLOW, "a node reads nodes and writes its own"
            return Decision.DENY, f"node {node} may write only its own Node"
        if resource == "leases" and not attrs.subresource:
            if attrs.namespace == LEASE_NAMESPACE and attrs.name == node and verb in _WRITE_OWN:
                return Decision.ALLOW, "a node renews its own lease"
            return Decision.DENY, f"node {node} may use only its own Lease {LEASE_NAMESPACE}/{node}"
        if resource == "pods" and attrs.subresource in ("", "status"):
            if verb in ("list", "watch"):
                if attrs.field_selector.replace(" ", "") in (f"spec.nodeName={node}", f"spec.nodeName=={node}"):
                    return Decision.ALLOW, "a node lists its own pods"
                return Decision.DENY, f"node {node} may list pods only with fieldSelector spec.nodeName={node}"
            # A node reports its pods' status and deletes them once stopped; it may not rewrite their
            # labels, finalizers or owners (that would pull pods into other Services or controllers).
            allowed = ("get", "update", "patch") if attrs.subresource == "status" else ("get", "delete")
            if verb in ("get", "update", "patch", "delete") and attrs.name:
                if verb not in allowed:
                    return Decision.DENY, f"node {node} may write only the status of its pods, not the pod itself"
                if await self._pod_node(attrs.namespace, attrs.name) == node:
                    return Decision.ALLOW, "the pod is bound to this node"
                return Decision.DENY, f"node {node} may touch only pods bound to it"
            return denied
        if resource in ("secrets", "configmaps") and not attrs.subresource:
            if verb == "get" and attrs.name:
                kind = "Secret" if resource == "secrets" else "ConfigMap"
                on_node = Filter(namespace=attrs.namespace, fields=parse_field_selector(f"spec.nodeName={node}", _POD))
                for pod in self.caches["Pod"].list(on_node, ordered=False):
                    assert isinstance(pod, core_pb2.Pod)
                    if pod.spec.node_name == node and attrs.name in referenced(pod, kind):
                        return Decision.ALLOW, f'pod "{pod.metadata.name}" on this node references it'
            return Decision.DENY, f"node {node} may read only {resource} referenced by pods bound to it"
        if resource == "persistentvolumeclaims" and not attrs.subresource:
            if verb == "get" and attrs.name:
                on_node = Filter(namespace=attrs.namespace, fields=parse_field_selector(f"spec.nodeName={node}", _POD))
                for pod in self.caches["Pod"].list(on_node, ordered=False):
                    assert isinstance(pod, core_pb2.Pod)
                    claims = {v.persistent_volume_claim.claim_name for v in pod.spec.volumes}
                    if pod.spec.node_name == node and attrs.name in claims:
                        return Decision.ALLOW, f'pod "{pod.metadata.name}" on this node uses the claim'
            return Decision.DENY, f"node {node} may read only the claims of pods bound to it"
        if resource == "persistentvolumes" and not attrs.subresource:
            if verb == "get" and attrs.name:
                pv = self.caches["PersistentVolume"].get(object_key(_PV, "", attrs.name))
                if pv is None:
                    # None of that name (as far as the cache knows): the agent's clean-up learns it is gone.
                    return Decision.ALLOW, "no such volume"
                assert isinstance(pv, core_pb2.PersistentVolume)
                if affinity_names(pv, node):
                    return Decision.ALLOW, "the volume is held by this node"
            return Decision.DENY, f"node {node} may read only the persistent volumes it holds"
        if resource in ("services", "endpoints", "namespaces") and verb in _READ and not attrs.subresource:
            return Decision.ALLOW, "the node proxy reads services"
        if resource == "events" and verb in ("create", "update", "patch", "get"):
            return Decision.ALLOW, "a node reports events"
        if resource == "subjectaccessreviews" and verb == "create":
            # The agent's metrics endpoint asks who may scrape it (Kubernetes' system:node role may too).
            return Decision.ALLOW, "a node delegates authorization of its own endpoints"
        if attrs.path:
            return Decision.NO_OPINION, ""
        if resource == "certificatesigningrequests" and attrs.subresource == "selfnodeclient" and verb == "create":
            return Decision.ALLOW, "a node renews its own certificate"
        return denied
