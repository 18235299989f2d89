"""Endpoints controller: for each Service with a selector, an Endpoints object of the same name listing its
pods' addresses, ready and not ready, with the Service's ports resolved per pod (a named targetPort is
looked up in the pod's container ports). Pods whose resolved ports differ land in different subsets.

reconcile(ns/name):  service gone ──> delete its Endpoints;  no selector ──> leave Endpoints alone (managed
by hand);  otherwise compute subsets and write them only if they changed.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import ClassVar

from controlplane.api.errors import AlreadyExistsError, NotFoundError
from controlplane.api.pb import core_pb2, meta_pb2
from controlplane.client.indexer import object_key
from controlplane.controllers.base import Controller, ControllerContext, copy
from controlplane.controllers.podcontrol import pod_is_ready


def selects(svc: core_pb2.Service, labels: Mapping[str, str]) -> bool:
    """Whether a Service's (equality-only) selector picks a pod with these labels."""
    return bool(svc.spec.selector) and all(labels.get(k) == v for k, v in svc.spec.selector.items())


def resolve_port(port: core_pb2.ServicePort, pod: core_pb2.Pod) -> int | None:
    """The pod's port for a Service port: a number as is, a name looked up among the containers' ports."""
    target = port.target_port
    kind = target.WhichOneof("kind")
    if kind == "number_value":
        return int(target.number_value)
    if kind == "string_value":
        text = target.string_value
        if text.isdigit():
            return int(text)
        for c in pod.spec.containers:
            for p in c.ports:
                if p.name == text and p.protocol == port.protocol:
                    return p.container_port or _allocated(pod, c.name, text)
        return None
    return port.port


def _allocated(pod: core_pb2.Pod, container: str, name: str) -> int | None:
    """The port the node allocated for a ``containerPort: 0`` (None until the agent reported it)."""
    for st in pod.status.container_statuses:
        if st.name == container:
            for p in st.allocated_ports:
                if p.name == name and p.container_port:
                    return int(p.container_port)
    return None


def subsets_for(svc: core_pb2.Service, pods: list[core_pb2.Pod]) -> list[core_pb2.EndpointSubset]:
    """The Endpoints subsets of a Service over its selected pods (deterministic order)."""
    groups: dict[tuple[tuple[str, int, str], ...], core_pb2.EndpointSubset] = {}
    for pod in sorted(pods, key=lambda p: (p.status.pod_ip, p.metadata.name)):
        if not pod.status.pod_ip or pod.metadata.HasField("deletion_timestamp"):
            continue
        if pod.status.phase in ("Succeeded", "Failed"):
            continue
        ports: list[tuple[str, int, str]] = []
        for sp in svc.spec.ports:
            resolved = resolve_port(sp, pod)
            if resolved is not None:
                ports.append((sp.name, resolved, sp.protocol or "TCP"))
        if svc.spec.ports and not ports:
            continue
        signature = tuple(ports)
        subset = groups.get(signature)
        if subset is None:
            subset = core_pb2.EndpointSubset(
                ports=[core_pb2.EndpointPort(name=n, port=p, protocol=proto) for n, p, proto in ports]
            )
            groups[signature] = subset
        address = core_pb2.EndpointAddress(
            ip=pod.status.pod_ip,
            node_name=pod.spec.node_name,
            target_ref=meta_pb2.ObjectReference(
                kind="Pod", namespace=pod.metadata.namespace, name=pod.metadata.name, uid=pod.metadata.uid
            ),
        )
        if pod_is_ready(pod) or svc.spec.publish_not_ready_addresses:
            subset.addresses.append(address)
        else:
            subset.not_ready_addresses.append(address)
    return list(groups.values())


class EndpointsController(Controller):
    """Keeps every selector Service's Endpoints equal to its pods."""

    name: ClassVar[str] = "endpoints"
    default_workers = 5

    def __init__(self, ctx: ControllerContext) -> None:
        super().__init__(ctx)
        self.services = ctx.informers.informer(core_pb2.Service)
        self.pods = ctx.informers.informer(core_pb2.Pod)
        self.endpoints = ctx.informers.informer(core_pb2.Endpoints)
        self.services.add_event_handler(self.enqueue, lambda old, new: self.enqueue(new), self.enqueue)
        self.pods.add_event_handler(self._pod_changed, self._pod_updated, self._pod_changed)
        self.endpoints.add_event_handler(self._endpoints_changed, None, self._endpoints_changed)

    def _services_of(self, pod: core_pb2.Pod) -> list[str]:
        return [
            object_key(svc)
            for svc in self.services.store.by_index("namespace", pod.metadata.namespace)
            if selects(svc, pod.metadata.labels)
        ]

    def _pod_changed(self, pod: core_pb2.Pod) -> None:
        for key in self._services_of(pod):
            self.queue.add(key)

    def _pod_updated(self, old: core_pb2.Pod, new: core_pb2.Pod) -> None:
        for key in {*self._services_of(old), *self._services_of(new)}:
            self.queue.add(key)

    def _endpoints_changed(self, ep: core_pb2.Endpoints) -> None:
        self.queue.add(object_key(ep))  # deleted or created by someone else: put it right

    async def reconcile(self, key: str) -> None:
        namespace, _, name = key.partition("/")
        svc = self.services.store.get(key)
        current = self.endpoints.store.get(key)
        if svc is None:
            if current is not None:
                with contextlib.suppress(NotFoundError):
                    await self.client.delete(core_pb2.Endpoints, name, namespace, uid=current.metadata.uid)
            return
        if not svc.spec.selector:
            return
        pods = [p for p in self.pods.store.by_index("namespace", namespace) if selects(svc, p.metadata.labels)]
        subsets = subsets_for(svc, pods)
        if (
            current is not None
            and list(current.subsets) == subsets
            and dict(current.metadata.labels) == dict(svc.metadata.labels)
        ):
            return
        if current is None:
            ep = core_pb2.Endpoints(api_version="v1", kind="Endpoints")
            ep.metadata.name, ep.metadata.namespace = name, namespace
            ep.metadata.labels.update(svc.metadata.labels)
            ep.subsets.extend(subsets)
            try:
                await self.client.create(ep)
                return
            except AlreadyExistsError:
                current = await self.client.get(core_pb2.Endpoints, name, namespace)
        ep = copy(current)
        ep.metadata.labels.clear()
        ep.metadata.labels.update(svc.metadata.labels)
        del ep.subsets[:]
        ep.subsets.extend(subsets)
        await self.client.update(ep)  # guarded by the cached resourceVersion; a conflict retries
