"""The records the agent and the container shim exchange through the container's state directory.

The agent hands the shim a ``ShimSpec`` (through its fork server, in a memfd: never on disk, as it holds the
container's environment); the shim writes ``started.json``
(a ``ShimStarted``) once the workload runs and ``exit.json`` (a ``Termination``) when it ends. Both sides
use these classes, so a field has one name, one type and one default. Standard library only: the shim
imports it in every supervisor it forks.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

SPEC = "spec.json"
STARTED = "started.json"
EXIT = "exit.json"

DEFAULT_LOG_MAX_BYTES = 10 * 1024 * 1024
DEFAULT_LOG_KEEP = 3


def now_rfc3339() -> str:
    """The current time in RFC 3339 with nanoseconds, as CRI log lines carry it."""
    ns = time.time_ns()
    return datetime.fromtimestamp(ns // 1_000_000_000, UTC).strftime("%Y-%m-%dT%H:%M:%S") + f".{ns % 10**9:09d}Z"


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Write JSON atomically (temp file + rename), readable by its owner only: a spec holds the container's
    resolved environment, Secrets included."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(json.dumps(data))
    os.replace(tmp, path)


R = TypeVar("R")


def _load(cls: type[R], path: Path) -> R | None:
    """A record read from ``path``; None if it is missing, unreadable or not this record (unknown fields are
    ignored, so an older agent reads a newer shim's record)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict):
        return None
    known = {f.name for f in fields(cls)}  # type: ignore[arg-type]
    try:
        return cls(**{k: v for k, v in data.items() if k in known})
    except TypeError:
        return None


@dataclass(frozen=True)
class ShimSpec:
    """How to run one container instance."""

    argv: list[str]
    env: dict[str, str]
    cwd: str
    state_dir: str
    log_path: str
    log_max_bytes: int = DEFAULT_LOG_MAX_BYTES
    log_keep: int = DEFAULT_LOG_KEEP
    uid: int | None = None
    """Run the workload as this user (and ``gid``/``groups``); None: as the shim's own user."""
    gid: int | None = None
    groups: list[int] = field(default_factory=list)
    cgroup_procs: list[str] = field(default_factory=list)
    """``cgroup.procs`` files the workload joins before it drops privileges."""
    rlimit_as: int = 0
    """An address-space limit in bytes (the fallback when there are no cgroups); 0: none."""

    def write(self, state_dir: Path) -> Path:
        """Store the spec in its state directory; the path the shim is given."""
        path = state_dir / SPEC
        write_json(path, asdict(self))
        return path

    def dumps(self) -> bytes:
        """The spec as JSON."""
        return json.dumps(asdict(self)).encode()

    @classmethod
    def loads(cls, data: bytes) -> ShimSpec:
        """A spec from JSON (ValueError if it is not one)."""
        try:
            raw = json.loads(data)
        except ValueError as err:
            raise ValueError(f"not a container spec: {err}") from None
        if not isinstance(raw, dict):
            raise ValueError("not a container spec")
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in raw.items() if k in known})

    @classmethod
    def read(cls, path: Path) -> ShimSpec:
        """The spec at ``path`` (ValueError if it is not one)."""
        spec = _load(cls, path)
        if spec is None:
            raise ValueError(f"{path}: not a container spec")
        return spec


@dataclass(frozen=True)
class ShimStarted:
    """The workload runs: its pid and when it started."""

    pid: int
    started_at: str

    def write(self, state_dir: Path) -> None:
        write_json(state_dir / STARTED, asdict(self))

    @classmethod
    def read(cls, state_dir: Path) -> ShimStarted | None:
        return _load(cls, state_dir / STARTED)


@dataclass(frozen=True)
class Termination:
    """How a container instance ended — the one shape from the shim's record to the pod's status."""

    exit_code: int
    signal: int
    reason: str
    message: str
    finished_at: str
    started: bool = True
    """False if the workload never ran (the command could not be started)."""
    started_at: str = ""
    container_id: str = ""

    def write(self, state_dir: Path) -> None:
        write_json(state_dir / EXIT, asdict(self))

    @classmethod
    def read(cls, state_dir: Path) -> Termination | None:
        return _load(cls, state_dir / EXIT)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Termination:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})
