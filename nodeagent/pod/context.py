"""What every pod worker shares: the agent's clients, configuration and process starter."""

from __future__ import annotations

import dataclasses
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from google.protobuf.message import Message

from controlplane.api.pb import core_pb2
from controlplane.client.client import ApiClient
from nodeagent.cgroups import CgroupDriver
from nodeagent.config import AgentConfig
from nodeagent.pod.process import Processes
from nodeagent.state import StateStore


class Recorder(Protocol):
    """Where Events go (``controlplane.client.events.EventRecorder`` in the agent)."""

    def event(self, obj: Message, type_: str, reason: str, message: str) -> None: ...


class PortAllocator:
    """Free host ports for containerPort 0, remembered per pod and container port name."""

    def __init__(self) -> None:
        self.used: set[int] = set()

    def allocate(self) -> int:
        """A port no other process listens on right now."""
        while True:
            with socket.socket() as s:
                s.bind(("", 0))
                port = int(s.getsockname()[1])
            if port not in self.used:
                self.used.add(port)
                return port


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
    services: Callable[[str], list[core_pb2.Service]] = dataclasses.field(default=lambda namespace: [])
    """The Services of a namespace as the agent knows them (for the pods' service environment variables)."""
