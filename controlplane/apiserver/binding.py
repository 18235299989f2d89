"""``BindPods``: many pods assigned to nodes in one call, as one etcd transaction (Kubernetes' ``pods/binding``).

Each binding is checked on its own and gets its own result: the pod must exist, still have the uid and
resourceVersion the caller saw (when given), be unassigned and not being deleted. The bindings that pass are
written together, each guarded by the revision it was read at, so a pod is never bound twice: a racing
scheduler's binding of the same pod finds ``spec.nodeName`` set (or the revision moved) and gets ABORTED. A
binding the pod already has is OK without a write, so a retried request gets the same answer.
All written pods share one resourceVersion (one etcd revision).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from google.protobuf.message import Message

from controlplane.api import kinds, validation
from controlplane.api.errors import ApiError, ConflictError, InvalidError
from controlplane.api.objects import meta
from controlplane.api.pb import api_pb2, core_pb2
from controlplane.apiserver.registry import Registry

MAX_BINDINGS = 100
"""Bindings per request (below etcd's default ``--max-txn-ops`` of 128)."""


def _check(index: int, b: api_pb2.PodBinding) -> None:
    errs = validation.Errors()
    path = f"bindings[{index}]"
    if b.namespace:
        validation.check_dns1123_label(errs, f"{path}.namespace", b.namespace)
    if not b.name:
        errs.add(f"{path}.name", "required")
    else:
        validation.check_dns1123_subdomain(errs, f"{path}.name", b.name)
    if not b.node_name:
        errs.add(f"{path}.nodeName", "required")
    else:
        validation.check_dns1123_subdomain(errs, f"{path}.nodeName", b.node_name)
    if b.resource_version and not b.resource_version.isdigit():
        errs.add(f"{path}.resourceVersion", f"must be a number, not {b.resource_version[:40]!r}")
    if errs.items:
        where = f"{b.namespace or 'default'}/{b.name}"[:300]
        raise InvalidError(f'Pod "{where}": ' + "; ".join(errs.items), field=errs.items[0])


def _assign(b: api_pb2.PodBinding) -> Callable[[Message], Message]:
    def mutate(current: Message) -> Message:
        pod: core_pb2.Pod = current  # type: ignore[assignment]
        m = pod.metadata
        where = f'Pod "{m.namespace}/{m.name}"'
        if b.uid and m.uid != b.uid:
            raise ConflictError(f"{where}: uid is {m.uid}, not {b.uid} (deleted and created again)")
        if pod.spec.node_name == b.node_name:
            return pod  # already done (a retried request): no write, and the same answer
        if pod.spec.node_name:
            raise ConflictError(f"{where} is already assigned to node {pod.spec.node_name!r}")
        if b.resource_version and m.resource_version != b.resource_version:
            raise ConflictError(
                f"{where}: the object has been modified (resourceVersion {b.resource_version} is stale, current is "
                f"{m.resource_version})"
            )
        if m.HasField("deletion_timestamp"):
            raise ConflictError(f"{where} is being deleted, cannot be assigned to a host")
        pod.spec.node_name = b.node_name
        return pod

    return mutate


def namespaces(bindings: Sequence[api_pb2.PodBinding]) -> set[str]:
    """The namespaces a request's bindings name (empty means ``default``)."""
    return {b.namespace or "default" for b in bindings}


async def bind_pods(registry: Registry, request: api_pb2.BindPodsRequest) -> api_pb2.BindPodsResponse:
    """Apply a ``BindPodsRequest``; a malformed binding fails alone, an oversized request fails whole."""
    if len(request.bindings) > MAX_BINDINGS:
        raise InvalidError(f"bindings: at most {MAX_BINDINGS} per request, not {len(request.bindings)}")
    results = [
        api_pb2.BindingResult(namespace=b.namespace or "default", name=b.name, code="OK") for b in request.bindings
    ]
    seen: set[tuple[str, str]] = set()
    changes: list[tuple[str, str, Callable[[Message], Message]]] = []
    positions: list[int] = []
    for i, b in enumerate(request.bindings):
        try:
            _check(i, b)
            if (results[i].namespace, b.name) in seen:
                raise InvalidError(f'Pod "{results[i].namespace}/{b.name}": bindings[{i}]: named twice in one request')
        except ApiError as err:
            _fail(results[i], err)
            continue
        seen.add((results[i].namespace, b.name))
        changes.append((results[i].namespace, b.name, _assign(b)))
        positions.append(i)
    if changes:
        outcome = await registry.update_many(kinds.lookup("Pod"), changes)
        for i, done in zip(positions, outcome, strict=True):
            if isinstance(done, ApiError):
                _fail(results[i], done)
            else:
                results[i].resource_version = meta(done).resource_version
    return api_pb2.BindPodsResponse(results=results)


def _fail(result: api_pb2.BindingResult, err: ApiError) -> None:
    result.code, result.message = err.code.name, err.message
