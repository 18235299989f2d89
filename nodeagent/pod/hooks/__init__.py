"""Container hooks: the steps a ``ContainerRunner`` runs around every instance of a container, in order.

A hook implements any of:

- ``prestart(inst)``: shape the instance before its process starts (environment, user, limits, log file);
  raise ``ConfigError`` to refuse it (CreateContainerConfigError, retried). Run again for an *adopted*
  instance (``inst.adopted``), whose process already runs: a prestart must be idempotent and must not
  assume it runs once.
- ``poststart(inst)``: the workload runs (probes start here).
- ``prekill(inst, deadline)``: the instance is about to be stopped on purpose (preStop hooks), before SIGTERM;
  ``deadline`` is the event loop time by which it must be gone.
- ``exited(inst, termination) -> Termination``: the process has ended; a hook may refine how (OOMKilled) and
  release what it held for this instance.
- ``stop(inst)``: the runner is done with the instance (ended, or the worker is cancelled): stop background
  work. Called at the end of every instance that got past ``prestart``, also on cancellation.

Hooks never call each other; what one produces for another travels on the ``Instance`` (the environment the
probes need, the ports the environment allocated).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from controlplane.api.pb import core_pb2
from nodeagent.identity import RunAs
from nodeagent.pod.process import Process
from nodeagent.shimspec import DEFAULT_LOG_KEEP, DEFAULT_LOG_MAX_BYTES, ShimSpec, Termination


class InstanceEvents(Protocol):
    """What a hook may ask of the runner that owns the instance."""

    def probe_changed(self, kind: str, ok: bool) -> None:
        """A startup or readiness probe's result changed."""

    def restart(self) -> None:
        """Stop the instance gracefully (a failed liveness or startup probe); the restart policy decides next."""

    def reload(self) -> None:
        """Stop the instance gracefully and start it again at once, whatever the restart policy (its
        configuration changed: ``reloadPolicy`` Restart)."""

    def event(self, type_: str, reason: str, message: str) -> None:
        """Record an Event on the pod."""


@dataclass
class Instance:
    """One run of one container, as the hooks shape and see it."""

    pod: core_pb2.Pod
    container: core_pb2.Container
    init: bool
    restart_count: int
    state_dir: Path
    events: InstanceEvents
    adopted: bool = False
    argv: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    cwd: str = ""
    ports: dict[str, int] = field(default_factory=dict)
    """Named container ports as the process sees them (containerPort 0 resolved)."""
    allocated: dict[str, int] = field(default_factory=dict)
    """The named ports the node allocated (containerPort 0), reported in the container's status."""
    run_as: RunAs = field(default_factory=lambda: RunAs(None, None))
    cgroup_procs: list[str] = field(default_factory=list)
    rlimit_as: int = 0
    log_path: str = ""
    log_max_bytes: int = DEFAULT_LOG_MAX_BYTES
    log_keep: int = DEFAULT_LOG_KEEP
    process: Process | None = None

    @property
    def name(self) -> str:
        return self.container.name

    def shim_spec(self) -> ShimSpec:
        """What the shim is given to start this instance."""
        return ShimSpec(
            argv=self.argv,
            env=self.env,
            cwd=self.cwd,
            state_dir=str(self.state_dir),
            log_path=self.log_path,
            log_max_bytes=self.log_max_bytes,
            log_keep=self.log_keep,
            uid=self.run_as.uid,
            gid=self.run_as.gid,
            groups=list(self.run_as.groups),
            cgroup_procs=self.cgroup_procs,
            rlimit_as=self.rlimit_as,
        )


class ContainerHook:
    """A hook with nothing to do at any step; hooks override the steps they take part in."""

    name = "hook"

    async def prestart(self, inst: Instance) -> None:
        return None

    async def poststart(self, inst: Instance) -> None:
        return None

    async def prekill(self, inst: Instance, deadline: float) -> None:
        return None

    def exited(self, inst: Instance, termination: Termination) -> Termination:
        return termination

    async def stop(self, inst: Instance) -> None:
        return None
