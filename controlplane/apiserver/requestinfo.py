"""What a gRPC call asks for, in authorization's terms (verb, resource, subresource, namespace, name).

``Api/Create`` of a Deployment is ``create deployments`` in group ``apps``; ``UpdateStatus`` is ``update
pods/status``; ``PodLogs`` is ``get pods/log``; ``PodExec`` is ``create pods/exec``; ``PodPortForward`` is
``create pods/portforward``; ``BindPods`` is ``create pods/binding``; ``EvictPod`` is ``create pods/eviction``
(Kubernetes' names).
"""

from __future__ import annotations

from typing import Any

from controlplane.api import kinds
from controlplane.api.objects import meta, unwrap
from controlplane.api.pb import api_pb2, metrics_pb2, podaccess_pb2
from controlplane.apiserver.authn import UserInfo
from controlplane.apiserver.authz import Attributes
from controlplane.apiserver.binding import namespaces as binding_namespaces

API = "/navarch.v1.Api/"
AUTH = "/navarch.v1.Auth/"
HEALTH = "/grpc.health.v1.Health/"
REFLECTION = "/grpc.reflection."

AUTH_AUDIT = {
    AUTH + "SignNodeCertificate": ("create", "certificatesigningrequests"),
    AUTH + "AccessReview": ("create", "accessreviews"),
    AUTH + "WhoAmI": ("get", "whoami"),
}
"""How the Auth service's calls read in the audit log."""

_VERBS = {
    "Create": "create",
    "Get": "get",
    "List": "list",
    "Watch": "watch",
    "Update": "update",
    "UpdateStatus": "update",
    "Patch": "patch",
    "Delete": "delete",
}


def _namespace(info: kinds.KindInfo, namespace: str) -> str:
    return (namespace or "default") if info.namespaced else ""


def _for_kind(user: UserInfo, verb: str, info: kinds.KindInfo, namespace: str, name: str, **extra: Any) -> Attributes:
    return Attributes(
        user=user,
        verb=verb,
        resource=info.plural,
        namespace=_namespace(info, namespace),
        name=name,
        api_group=info.group.split("/")[0] if info.group else "",
        **extra,
    )


def api_attributes(method: str, request: Any, user: UserInfo) -> Attributes:
    """Attributes of one ``navarch.v1.Api`` call (for PodExec: of its first frame). Bad input raises the
    API's own error (an unknown kind is NOT_FOUND, an empty envelope INVALID_ARGUMENT)."""
    name = method[len(API) :]
    if name in ("Create", "Update", "UpdateStatus"):
        obj = unwrap(request.object)
        info = kinds.of_message(obj)
        m = meta(obj)
        sub = "status" if name == "UpdateStatus" else ""
        # Create carries the new object's name: the node authorizer needs it (RBAC never matches a name on create).
        return _for_kind(user, _VERBS[name], info, m.namespace, m.name, subresource=sub)
    if name in ("Get", "Delete"):
        info = kinds.lookup(request.kind)
        return _for_kind(user, _VERBS[name], info, request.namespace, request.name)
    if name == "Patch":
        assert isinstance(request, api_pb2.PatchRequest)
        info = kinds.lookup(request.kind)
        sub = "status" if request.status else ""
        return _for_kind(user, "patch", info, request.namespace, request.name, subresource=sub)
    if name in ("List", "Watch"):
        info = kinds.lookup(request.kind)
        namespace = request.namespace if info.namespaced else ""  # empty: every namespace
        return Attributes(
            user=user,
            verb=_VERBS[name],
            resource=info.plural,
            namespace=namespace,
            api_group=info.group.split("/")[0] if info.group else "",
            field_selector=request.field_selector,
        )
    if name == "BindPods":
        assert isinstance(request, api_pb2.BindPodsRequest)
        # One namespace: permission there is enough; several: only a cluster-wide grant covers them all.
        named = binding_namespaces(request.bindings)
        namespace = next(iter(named)) if len(named) == 1 else ""
        pod = kinds.lookup("Pod")
        return Attributes(user=user, verb="create", resource=pod.plural, subresource="binding", namespace=namespace)
    if name == "EvictPod":
        assert isinstance(request, api_pb2.EvictPodRequest)
        return _for_kind(user, "create", kinds.lookup("Pod"), request.namespace, request.name, subresource="eviction")
    if name == "ListNodeMetrics":
        assert isinstance(request, metrics_pb2.NodeMetricsRequest)
        verb = "get" if request.name else "list"
        return Attributes(user, verb, "nodes", name=request.name, api_group="metrics.k8s.io")
    if name == "ListPodMetrics":
        assert isinstance(request, metrics_pb2.PodMetricsRequest)
        verb = "get" if request.name else "list"
        return Attributes(
            user, verb, "pods", namespace=request.namespace, name=request.name, api_group="metrics.k8s.io"
        )
    if name == "PodLogs":
        assert isinstance(request, podaccess_pb2.PodLogRequest)
        return _for_kind(user, "get", kinds.lookup("Pod"), request.namespace, request.name, subresource="log")
    if name == "PodExec":
        assert isinstance(request, podaccess_pb2.PodExecInput)
        start = request.start
        return _for_kind(user, "create", kinds.lookup("Pod"), start.namespace, start.name, subresource="exec")
    if name == "PodPortForward":
        assert isinstance(request, podaccess_pb2.PortForwardFrame)
        target = request.start
        return _for_kind(user, "create", kinds.lookup("Pod"), target.namespace, target.name, subresource="portforward")
    raise ValueError(f"no authorization attributes for {method}")


def review_attributes(user: UserInfo, verb: str, resource: str, namespace: str, name: str) -> Attributes:
    """Attributes of an access review's question (``pods/log`` names a subresource)."""
    base, _, sub = resource.partition("/")
    if base == "certificatesigningrequests":
        return Attributes(user, verb, base, sub, "", name, "certificates.k8s.io")
    info = kinds.lookup(base)
    return _for_kind(user, verb, info, namespace, name, subresource=sub)
