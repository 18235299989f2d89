"""NodePorts (filter): the host ports the pod asks for are free on the node."""

from __future__ import annotations

from typing import ClassVar

from controlplane.api.pb import core_pb2
from controlplane.scheduler.framework import SUCCESS, CycleState, NodeInfo, Status, host_ports, unschedulable

_ANY = "0.0.0.0"


def _conflicts(wanted: set[tuple[str, str, int]], used: set[tuple[str, str, int]]) -> bool:
    for ip, proto, port in wanted:
        for uip, uproto, uport in used:
            if port == uport and proto == uproto and (ip == uip or _ANY in (ip, uip)):
                return True
    return False


class NodePorts:
    """Two pods cannot listen on the same host port (same protocol, overlapping address)."""

    name: ClassVar[str] = "NodePorts"

    def applies(self, state: CycleState, pod: core_pb2.Pod) -> bool:
        """Only pods that ask for host ports."""
        return any(p.host_port for c in pod.spec.containers for p in c.ports)

    def filter(self, state: CycleState, pod: core_pb2.Pod, node: NodeInfo) -> Status:
        """Reject the node if any requested host port is taken there."""
        wanted: set[tuple[str, str, int]] = state.memo("host-ports", lambda: host_ports(pod))
        if not wanted or not _conflicts(wanted, node.ports):
            return SUCCESS
        return unschedulable("node(s) didn't have free ports for the requested pod ports")
