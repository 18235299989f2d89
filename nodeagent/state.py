"""Per-pod state on disk, so that a restarted agent resumes where it left off.

``<data-dir>/pods/<uid>/pod.json`` holds the pod's identity and, per container, the shim's pid and start
time, the restart count and the last termination. Written atomically after every change.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from nodeagent.shimspec import Termination, write_json


@dataclass
class ContainerRecord:
    """What the agent must remember about one container."""

    shim_pid: int = 0
    shim_start: int = 0
    restart_count: int = 0
    started_at: str = ""
    last_termination: Termination | None = None
    done: bool = False
    """Finished and not to be restarted (init containers that succeeded, restartPolicy stops)."""


@dataclass
class PodRecord:
    """What the agent must remember about one pod."""

    uid: str
    namespace: str
    name: str
    containers: dict[str, ContainerRecord] = field(default_factory=dict)
    init_done: bool = False
    start_time: str = ""
    ports: dict[str, int] = field(default_factory=dict)
    """Host ports allocated for ``containerPort: 0``, by ``<container>/<port name>``, for the pod's life."""

    def container(self, name: str) -> ContainerRecord:
        """The record of a container (created empty on first use)."""
        return self.containers.setdefault(name, ContainerRecord())


class StateStore:
    """Reads and writes pod records under ``<data-dir>/pods``."""

    def __init__(self, data_dir: Path) -> None:
        self.root = data_dir / "pods"
        self.root.mkdir(parents=True, exist_ok=True)

    def pod_dir(self, uid: str) -> Path:
        """The pod's sandbox directory."""
        return self.root / uid

    def save(self, record: PodRecord) -> None:
        """Persist a record atomically."""
        path = self.pod_dir(record.uid) / "pod.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        write_json(path, asdict(record))

    def load_all(self) -> dict[str, PodRecord]:
        """Every pod record on disk, by uid (unreadable ones are skipped)."""
        out: dict[str, PodRecord] = {}
        for path in self.root.glob("*/pod.json"):
            try:
                data = json.loads(path.read_text())
                containers = {k: _container(v) for k, v in data.pop("containers", {}).items()}
                out[data["uid"]] = PodRecord(**data, containers=containers)
            except (OSError, ValueError, TypeError, KeyError):
                continue
        return out


def _container(data: dict[str, Any]) -> ContainerRecord:
    term = data.pop("last_termination", None)
    return ContainerRecord(**data, last_termination=Termination.from_dict(term) if term else None)
