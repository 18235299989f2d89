"""One pod worker per pod: the pod's phase machine, and nothing else.

::

            ┌──────────── deletionTimestamp (or the Pod vanished) from any state ─────────────┐
            v                                                                                  │
    Pending ──sandbox/volumes──> init containers, in order ──> containers (each a ContainerRunner) ──┤
       │  (config errors: waiting CreateContainerConfigError, retried with back-off)               │
       │                                             all containers done, no restart ──> Succeeded / Failed
       v
    Terminating: each runner's preStop, SIGTERM, grace period, SIGKILL; then the Pod is deleted with grace 0
                 (uid precondition) and the sandbox removed — or, draining, the pod is reported Failed.

A finished pod (Succeeded/Failed) never runs again, also after an agent restart. Cancelling ``run`` (the
agent stopping) leaves every process running: a restarted agent adopts them from the pod's record.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from datetime import UTC, datetime
from pathlib import Path

from controlplane.api.errors import ConflictError, NotFoundError
from controlplane.api.pb import core_pb2
from controlplane.client.events import NORMAL
from nodeagent import metrics
from nodeagent.identity import RunAs
from nodeagent.logs import ContainerLogState
from nodeagent.pod.container import ContainerRunner, timestamp
from nodeagent.pod.context import AgentContext
from nodeagent.pod.hooks import ContainerHook
from nodeagent.pod.hooks.limits import LimitsHook
from nodeagent.pod.pipeline import container_hooks
from nodeagent.pod.restart import BackOff, effective_policy
from nodeagent.pod.status import PodView, StatusPublisher, pod_status, start_settled
from nodeagent.pod.volumes import PodVolumes
from nodeagent.sandbox import Sandbox
from nodeagent.shimspec import now_rfc3339
from nodeagent.state import PodRecord
from nodeagent.usage import RunningContainer

log = logging.getLogger(__name__)

FIRST_WRITE_HOLD = 1.0
"""Seconds a new pod's first status write may wait for its containers to have started (or failed)."""


class PodWorker:
    """Runs one pod (identified by uid) on this node."""

    def __init__(self, ctx: AgentContext, pod: core_pb2.Pod, record: PodRecord | None) -> None:
        self.ctx = ctx
        self.pod = pod
        self.uid = pod.metadata.uid
        self.record = record or PodRecord(pod.metadata.uid, pod.metadata.namespace, pod.metadata.name)
        self.sandbox = Sandbox(ctx.state.pod_dir(self.uid), ctx.local_volumes)
        self.volumes = PodVolumes(ctx.client, self.sandbox, ctx.cgroups, self.uid)
        self.phase = pod.status.phase or "Pending"
        self.first_seen = time.monotonic()
        """When this agent first saw the pod (``kubelet_pod_start_duration_seconds`` runs from here)."""
        self.reason = self.message = ""
        self._terminate = asyncio.Event()
        self._draining = self._vanished = False
        self.limits = LimitsHook(ctx.cgroups, self.uid, observe=ctx.config.limits_mode == "observe")
        for port in self.record.ports.values():
            ctx.ports.reserve(port)  # already the pod's (an agent restart): no one else may get it
        self.hooks: list[ContainerHook] = container_hooks(
            ctx,
            self.sandbox,
            lambda: self.volumes.paths,
            self.limits,
            self.record.ports,
            lambda: self.volumes.sync(lambda: self.pod),
        )
        self.publisher = StatusPublisher(
            ctx.client,
            lambda: self.pod,
            self.build_status,
            settled=self._start_settled,
            first_write_hold=FIRST_WRITE_HOLD,
        )
        cfg = ctx.config
        backoff = BackOff(cfg.backoff_initial, cfg.backoff_max, cfg.backoff_reset)
        self.runners: dict[str, ContainerRunner] = {}
        for init, containers in ((True, pod.spec.init_containers), (False, pod.spec.containers)):
            for c in containers:
                rec = self.record.container(c.name)
                st = core_pb2.ContainerStatus(name=c.name, restart_count=rec.restart_count, image=c.image)
                st.state.waiting.reason = "ContainerCreating"
                self.runners[c.name] = ContainerRunner(
                    container=c,
                    init=init,
                    policy=effective_policy(pod.spec.restart_policy, init=init),
                    pod=lambda: self.pod,
                    state_dir=self.sandbox.container_dir(c.name),
                    record=rec,
                    status=st,
                    hooks=self.hooks,
                    processes=ctx.processes,
                    backoff=backoff,
                    grace=self._grace_seconds,
                    event=self._event,
                    publish=self.publisher.mark,
                    save=self._save,
                )
        if self.terminal:
            # A finished pod is never run again (also after an agent restart): keep what it reported.
            for st in [*pod.status.init_container_statuses, *pod.status.container_statuses]:
                if st.name in self.runners:
                    self.runners[st.name].status.CopyFrom(st)
            self.reason, self.message = pod.status.reason, pod.status.message

    @property
    def terminal(self) -> bool:
        """Whether the pod has finished (Succeeded or Failed) for good."""
        return self.phase in ("Succeeded", "Failed")

    # ------------------------------------------------------------ inputs

    def update(self, pod: core_pb2.Pod) -> None:
        """A newer version of the Pod arrived."""
        if pod.metadata.uid != self.uid:
            return
        self.pod = pod
        if pod.metadata.HasField("deletion_timestamp"):
            self._terminate.set()

    def gone(self) -> None:
        """The Pod disappeared from the API (deleted with grace 0, or re-bound): kill everything at once."""
        self._vanished = True
        self._terminate.set()

    def drain(self) -> None:
        """The node is shutting down (--drain-on-exit): stop the containers, report the pod Failed, keep it."""
        self._draining = True
        self._terminate.set()

    # ------------------------------------------------------------ access (logs, exec)

    def container_names(self) -> list[str]:
        """Init containers, then main containers, as in the spec."""
        return list(self.runners)

    def log_state(self, name: str) -> ContainerLogState:
        """Where a container's logs stand, for the log follower."""
        rec = self.record.container(name)
        runner = self.runners.get(name)
        proc = runner.process if runner is not None else None
        return ContainerLogState(
            instance=rec.restart_count,
            running=proc is not None and proc.running(),
            final=rec.done or self._terminate.is_set(),
        )

    def container_dir(self, name: str) -> Path:
        """Where a container's logs and shim state are."""
        return self.sandbox.container_dir(name)

    @property
    def exec_env(self) -> dict[str, tuple[dict[str, str], str]]:
        """Environment and working directory of each started container, for exec."""
        return {n: (r.instance.env, r.instance.cwd) for n, r in self.runners.items() if r.instance is not None}

    @property
    def exec_cgroups(self) -> dict[str, list[str]]:
        """The cgroup.procs files of each started container: exec'd commands join them."""
        return {n: r.instance.cgroup_procs for n, r in self.runners.items() if r.instance is not None}

    @property
    def running_containers(self) -> list[RunningContainer]:
        """Every container instance whose status is running, for the usage sampler."""
        m = self.pod.metadata
        return [
            RunningContainer(
                m.namespace, m.name, m.uid, n, r.record.restart_count, r.record.shim_pid, r.record.shim_start
            )
            for n, r in self.runners.items()
            if r.record.shim_pid and r.status.state.HasField("running")
        ]

    @property
    def shim_pids(self) -> list[int]:
        """The shim of every container instance that runs (each the root of its container's processes)."""
        return [r.record.shim_pid for r in self.runners.values() if r.record.shim_pid and r.leftover() is not None]

    @property
    def exec_identity(self) -> dict[str, RunAs]:
        """Who each container runs as: exec'd commands run as the same user."""
        return {n: r.instance.run_as for n, r in self.runners.items() if r.instance is not None}

    # ------------------------------------------------------------ the phase machine

    async def run(self) -> None:
        """Drive the pod until it is deleted (cancelling leaves its processes running)."""
        publisher = asyncio.create_task(self.publisher.run(), name=f"status-{self.pod.metadata.name}")
        lifecycle = asyncio.create_task(self._lifecycle(), name=f"pod-{self.pod.metadata.name}")
        try:
            if self.pod.metadata.HasField("deletion_timestamp"):
                self._terminate.set()
            await self._terminate.wait()
            lifecycle.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await lifecycle
            await self._terminate_all()
            if self._draining:
                await self._report_shutdown()
            else:
                await self._finish_deletion()
        finally:
            lifecycle.cancel()
            publisher.cancel()
            await asyncio.gather(lifecycle, publisher, return_exceptions=True)

    async def _lifecycle(self) -> None:
        if self.terminal:
            return  # finished: nothing runs again
        if not self.record.start_time:
            self.record.start_time = now_rfc3339()
        self.sandbox.create()
        self._save()
        cfg = self.ctx.config
        await self.volumes.prepare(
            lambda: self.pod, self._all_waiting, self._event, (cfg.backoff_initial, cfg.backoff_max)
        )
        refresher = asyncio.create_task(
            self.volumes.refresh(lambda: self.pod, cfg.volume_refresh), name=f"volumes-{self.pod.metadata.name}"
        )
        try:
            await self._run_containers()
        finally:
            refresher.cancel()
            await asyncio.gather(refresher, return_exceptions=True)

    async def _run_containers(self) -> None:
        self._set_phase("Pending")
        for c in self.pod.spec.init_containers:
            if self.record.container(c.name).done:
                continue
            if not await self.runners[c.name].run():
                self.reason, self.message = "InitContainerFailed", f'init container "{c.name}" failed'
                self._set_phase("Failed")
                return
        self.record.init_done = True
        self._save()
        self._set_phase("Running")
        results = await asyncio.gather(*(self.runners[c.name].run() for c in self.pod.spec.containers))
        self._set_phase("Succeeded" if all(results) else "Failed")

    async def _terminate_all(self) -> None:
        """Graceful termination of every running container: preStop, SIGTERM, grace period, SIGKILL."""
        running = [r for r in self.runners.values() if r.leftover() is not None]
        if not running:
            return
        grace = self._grace_seconds()
        log.info(
            "pod %s/%s: stopping %s with a %gs grace period",
            self.pod.metadata.namespace,
            self.pod.metadata.name,
            ", ".join(r.name for r in running),
            grace,
        )
        self._event(NORMAL, "Killing", f"Stopping containers ({grace:g}s grace period)")
        deadline = asyncio.get_running_loop().time() + grace
        # Every preStop hook finishes (or the grace period ends) before any container gets SIGTERM: a
        # container's hook may talk to another container of the pod.
        await asyncio.gather(*(r.prekill(deadline) for r in running))
        await asyncio.gather(*(r.kill(deadline) for r in running))

    def _grace_seconds(self) -> float:
        if self._vanished:
            return 0.0  # no object left to wait for: nobody may rely on this pod any more
        m = self.pod.metadata
        if m.HasField("deletion_grace_period_seconds"):
            return float(m.deletion_grace_period_seconds)
        spec = self.pod.spec
        return float(spec.termination_grace_period_seconds if spec.HasField("termination_grace_period_seconds") else 30)

    async def _report_shutdown(self) -> None:
        """Mark the pod Failed because its node shut down, and wait (bounded) until that is written."""
        if not self.terminal:
            self.reason, self.message = "Terminated", "Pod was terminated in response to node shutdown."
            self._set_phase("Failed")
        for rec in self.record.containers.values():
            rec.done = True
        self._save()
        await self.publisher.flushed(10)

    async def _finish_deletion(self) -> None:
        """Remove the Pod from the API (grace 0) once its processes are gone, then the sandbox."""
        # Already gone, or a new pod of the same name (uid precondition fails): not ours to delete.
        with contextlib.suppress(NotFoundError, ConflictError):
            await self.ctx.client.delete(
                core_pb2.Pod, self.pod.metadata.name, self.pod.metadata.namespace, grace_period_seconds=0, uid=self.uid
            )
        self.volumes.remove()

    # ------------------------------------------------------------ status

    def _start_settled(self) -> bool:
        if self.terminal or self._terminate.is_set():
            return True
        main = [self.runners[c.name].status for c in self.pod.spec.containers]
        return start_settled([r.status for r in self.runners.values()], main)

    def _set_phase(self, phase: str) -> None:
        if phase == "Running" and self.phase != "Running":
            metrics.POD_START_DURATION.observe(time.monotonic() - self.first_seen)
        self.phase = phase
        self.publisher.mark()

    def _all_waiting(self, message: str) -> None:
        for runner in self.runners.values():
            runner.waiting("CreateContainerConfigError", message)

    def _event(self, type_: str, reason: str, message: str) -> None:
        self.ctx.recorder.event(self.pod, type_, reason, message)

    def _save(self) -> None:
        self.ctx.state.save(self.record)

    def build_status(self) -> core_pb2.PodStatus:
        """The Pod status as this worker sees it now."""
        return pod_status(
            PodView(
                phase=self.phase,
                reason=self.reason,
                message=self.message,
                node_ip=self.ctx.config.node_ip,
                qos_class=self.pod.status.qos_class,
                enforcement=self.limits.enforcement(self.pod),
                start_time=timestamp(self.record.start_time) if self.record.start_time else None,
                init_names=[c.name for c in self.pod.spec.init_containers],
                main_names=[c.name for c in self.pod.spec.containers],
                containers={n: r.status for n, r in self.runners.items()},
                init_done=self.record.init_done,
                previous_conditions=list(self.pod.status.conditions),
                now=datetime.now(UTC),
            )
        )
