"""What every pod worker shares: the agent's clients, configuration and process starter."""

from __future__ import annotations

import dataclasses
import random
import socket
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol

from google.protobuf.message import Message

from controlplane.api.pb import core_pb2
from controlplane.client.client import ApiClient
from nodeagent.artifacts import ArtifactCache
from nodeagent.cgroups import CgroupDriver
from nodeagent.config import AgentConfig
from nodeagent.localvolumes import LocalVolumes
from nodeagent.pod.process import Processes
from nodeagent.state import StateStore


class Recorder(Protocol):
    """Where Events go (``controlplane.client.events.EventRecorder`` in the agent)."""

    def event(self, obj: Message, type_: str, reason: str, message: str) -> None: ...


class PortsExhaustedError(Exception):
    """No port of the dynamic range is free."""


class PortAllocator:
    """Host ports for ``containerPort: 0``, from the agent's dynamic range (``--dynamic-port-range``).

    Guarantees: a port is handed to at most one holder until released; ports found in pod records at start
    are reserved before any new allocation (so an agent restart keeps every live pod's ports and gives them
    to no one else); a port some other process on the host is bound to right now is skipped. The choice is
    random within the range, so a port just released is unlikely to be handed out again at once.
    """

    def __init__(self, low: int = 20000, high: int = 29999, *, host: str = "") -> None:
        if not 0 < low <= high <= 65535:
            raise ValueError(f"dynamic port range {low}-{high}: must be within 1-65535, low first")
        self.low, self.high, self.host = low, high, host
        self.used: set[int] = set()

    def reserve(self, port: int) -> None:
        """Hold a port a pod already has (from its record)."""
        self.used.add(port)

    def release(self, ports: Iterable[int]) -> None:
        """Give ports back (their pod is gone)."""
        self.used.difference_update(ports)

    def allocate(self) -> int:
        """A free port of the range, now held; ``PortsExhaustedError`` if none is left."""
        size = self.high - self.low + 1
        start = random.randrange(size)
        for i in range(size):
            port = self.low + (start + i) % size
            if port not in self.used and _bindable(self.host, port):
                self.used.add(port)
                return port
        raise PortsExhaustedError(
            f"no free port in the dynamic range {self.low}-{self.high} ({len(self.used)} held by pods)"
        )


def _bindable(host: str, port: int) -> bool:
    """Whether nothing on this host holds ``port`` (TCP) right now."""
    with socket.socket() as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


@dataclass
class AgentContext:
    """What every pod worker shares."""

    client: ApiClient
    config: AgentConfig
    state: StateStore
    recorder: Recorder
    ports: PortAllocator
    cgroups: CgroupDriver | None
    processes: Processes
    """Starts and adopts every container's shim."""
    artifacts: ArtifactCache | None = None
    """The node's artifact cache (None: containers with artifacts are refused)."""
    local_volumes: LocalVolumes | None = None
    """The node's local persistent volumes (None: pods with persistentVolumeClaim volumes wait)."""
    services: Callable[[str], list[core_pb2.Service]] = dataclasses.field(default=lambda namespace: [])
    """The Services of a namespace as the agent knows them (for the pods' service environment variables)."""
