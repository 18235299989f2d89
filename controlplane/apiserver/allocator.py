"""Cluster IPs and node ports for Services, unique across every API server.

Uniqueness is etcd's job, not this process's: a Service is created in one transaction together with a
claim key per resource it uses (``/registry/claims/serviceips/<ip>``, ``.../nodeports/<port>``), and the
transaction fails if any claim exists. Deleting the Service deletes its claims in the same transaction.
This module only picks candidates (at random, skipping what the watch cache shows as taken) and retries
with another candidate when a claim turns out to be taken by a concurrent create.
"""

from __future__ import annotations

import ipaddress
import random
from collections.abc import Sequence
from dataclasses import dataclass, field

from google.protobuf.message import Message

from controlplane.api import kinds
from controlplane.api.errors import InvalidError, TooManyRequestsError
from controlplane.api.objects import describe
from controlplane.api.pb import core_pb2
from controlplane.storage import Store
from controlplane.storage.store import ClaimTakenError

IPS, PORTS = "serviceips/", "nodeports/"
_ATTEMPTS = 16


@dataclass(frozen=True)
class ServiceRanges:
    """Where cluster IPs and node ports come from."""

    cluster_ips: ipaddress.IPv4Network = field(default_factory=lambda: ipaddress.IPv4Network("127.77.0.0/16"))
    """Every Linux host routes all of 127.0.0.0/8 to loopback, so agents can listen on these without set-up."""
    node_ports: range = range(30000, 32768)
    """Kubernetes' default NodePort range."""


def parse_service_ranges(cidr: str, ports: str) -> ServiceRanges:
    """Ranges from flag values (``127.77.0.0/16``, ``30000-32767``); ``ValueError`` naming the flag."""
    try:
        net = ipaddress.IPv4Network(cidr)
    except ValueError as err:
        raise ValueError(f"--service-cluster-ip-range: {err}") from None
    if net.num_addresses < 4:
        raise ValueError(f"--service-cluster-ip-range: {cidr} is too small")
    low, sep, high = ports.partition("-")
    if not (sep and low.isdigit() and high.isdigit() and 0 < int(low) <= int(high) < 65536):
        raise ValueError(f"--service-node-port-range: {ports!r} is not a range like 30000-32767")
    return ServiceRanges(net, range(int(low), int(high) + 1))


def claims_of(svc: core_pb2.Service) -> list[str]:
    """The claims a stored Service holds."""
    out = []
    if svc.spec.cluster_ip and svc.spec.cluster_ip != "None":
        out.append(IPS + svc.spec.cluster_ip)
    out += [PORTS + str(p.node_port) for p in svc.spec.ports if p.node_port]
    return out


class ServiceAllocator:
    """Fills in ``spec.clusterIP`` and ``nodePort``s and stores the Service with its claims."""

    def __init__(self, store: Store, ranges: ServiceRanges | None = None) -> None:
        self.store = store
        self.ranges = ranges or ServiceRanges()

    def check_requested(self, svc: core_pb2.Service) -> None:
        """Refuse requested values outside the ranges, naming the field."""
        ip = svc.spec.cluster_ip
        if ip and ip != "None" and ipaddress.IPv4Address(ip) not in self.ranges.cluster_ips:
            raise InvalidError(
                f"{describe(svc)}: spec.clusterIP: {ip} is not in the service IP range {self.ranges.cluster_ips}",
                field="spec.clusterIP",
            )
        for i, port in enumerate(svc.spec.ports):
            if port.node_port and port.node_port not in self.ranges.node_ports:
                r = self.ranges.node_ports
                raise InvalidError(
                    f"{describe(svc)}: spec.ports[{i}].nodePort: {port.node_port} is not in the node port range "
                    f"{r.start}-{r.stop - 1}",
                    field=f"spec.ports[{i}].nodePort",
                )

    def _pick_ip(self, taken: set[str]) -> str:
        net = self.ranges.cluster_ips
        size = net.num_addresses - 2  # neither the network nor the broadcast address
        for _ in range(64):
            ip = str(net.network_address + random.randint(1, size))
            if ip not in taken:
                return ip
        for host in net.hosts():  # nearly full: look through all of it
            if str(host) not in taken:
                return str(host)
        raise TooManyRequestsError(f"no cluster IP left in the service IP range {net}")

    def _pick_port(self, taken: set[str]) -> int:
        ports = self.ranges.node_ports
        for _ in range(64):
            port = random.choice(ports)
            if str(port) not in taken:
                return port
        for port in ports:
            if str(port) not in taken:
                return port
        raise TooManyRequestsError(f"no node port left in the range {ports.start}-{ports.stop - 1}")

    async def create(
        self,
        svc: core_pb2.Service,
        taken_ips: set[str],
        taken_ports: set[str],
        *,
        unchanged: Sequence[tuple[str, int]] = (),
    ) -> Message:
        """Store ``svc`` with a cluster IP (unless headless or given) and node ports (NodePort type), retrying
        with fresh picks when a concurrent create claimed one first."""
        self.check_requested(svc)
        info = kinds.of_message(svc)
        requested_ip = svc.spec.cluster_ip
        requested_ports = {i: p.node_port for i, p in enumerate(svc.spec.ports) if p.node_port}
        taken_ips, taken_ports = set(taken_ips), set(taken_ports)
        for _ in range(_ATTEMPTS):
            candidate = core_pb2.Service()
            candidate.CopyFrom(svc)
            if not requested_ip:
                candidate.spec.cluster_ip = self._pick_ip(taken_ips)
            if candidate.spec.cluster_ip != "None":
                del candidate.spec.cluster_ips[:]
                candidate.spec.cluster_ips.append(candidate.spec.cluster_ip)
            if candidate.spec.type == "NodePort":
                used = {str(p) for p in requested_ports.values()}
                for i, port in enumerate(candidate.spec.ports):
                    if i not in requested_ports:
                        port.node_port = self._pick_port(taken_ports | used)
                        used.add(str(port.node_port))
            try:
                return await self.store.create(info, candidate, claims=claims_of(candidate), unchanged=unchanged)
            except ClaimTakenError as err:
                kind, _, value = err.claim.partition("/")
                if kind + "/" == IPS:
                    if requested_ip:
                        raise InvalidError(
                            f"{describe(svc)}: spec.clusterIP: {value} is already allocated (to {err.holder})",
                            field="spec.clusterIP",
                        ) from None
                    taken_ips.add(value)
                else:
                    for i, wanted in requested_ports.items():
                        if str(wanted) == value:
                            raise InvalidError(
                                f"{describe(svc)}: spec.ports[{i}].nodePort: {value} is already allocated "
                                f"(to {err.holder})",
                                field=f"spec.ports[{i}].nodePort",
                            ) from None
                    taken_ports.add(value)
        raise TooManyRequestsError(f"{describe(svc)}: could not allocate a cluster IP or node port; try again")
