"""One pod worker per pod: a state machine that turns a Pod into supervised processes and back.

::

            ┌──────────── deletionTimestamp (or the Pod vanished) from any state ─────────────┐
            v                                                                                  │
    Pending ──prepare sandbox/volumes──> Initializing ──init containers, in order──> Running ──┤
       │  (config errors: waiting CreateContainerConfigError, retried with back-off)            │
       │                                             all containers done, no restart ──> Succeeded / Failed
       v
    Terminating: preStop hooks, SIGTERM to every process group, wait the grace period, SIGKILL,
                 then delete the Pod with grace 0 and remove the sandbox (emptyDirs included).

Each container is supervised by ``_supervise``: start (or adopt) -> running (+ probes) -> terminated ->
restart per ``restartPolicy`` with CrashLoopBackOff (initial delay doubling to a cap, reset after a long
enough run). Status is written through UpdateStatus only when it changes. The agent stopping cancels the
worker without touching its processes: a restarted agent adopts them from the pod's record on disk.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import signal
import socket
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp

from controlplane.api.errors import ApiError, ConflictError, NotFoundError
from controlplane.api.pb import core_pb2, meta_pb2
from controlplane.api.quantity import parse_quantity
from controlplane.client.client import ApiClient
from controlplane.client.events import NORMAL, WARNING, EventRecorder
from nodeagent import identity, supervisor
from nodeagent.cgroups import CgroupDriver, Limits
from nodeagent.config import AgentConfig
from nodeagent.forkserver import ForkServer
from nodeagent.logs import ContainerLogState, instance_log, prune_instances
from nodeagent.probes import ProbeRunner, check
from nodeagent.sandbox import ConfigError, Sandbox, container_env, env_name, expand, service_env
from nodeagent.shimspec import ShimSpec, Termination, now_rfc3339
from nodeagent.state import ContainerRecord, PodRecord, StateStore
from nodeagent.supervisor import ContainerProcess

log = logging.getLogger(__name__)


@dataclass
class AgentContext:
    """What every pod worker shares."""

    client: ApiClient
    config: AgentConfig
    state: StateStore
    recorder: EventRecorder
    ports: PortAllocator
    cgroups: CgroupDriver | None
    launcher: ForkServer
    """Starts every container's shim (one pre-imported parent that forks them)."""
    services: Callable[[str], list[core_pb2.Service]] = dataclasses.field(default=lambda namespace: [])
    """The Services of a namespace as the agent knows them (for the pods' service environment variables)."""


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


def _ts(rfc3339: str) -> Timestamp:
    ts = Timestamp()
    if rfc3339:
        ts.FromJsonString(rfc3339)
    return ts


def _seconds_between(start: str, end: str) -> float:
    if not start or not end:
        return 0.0
    return (_ts(end).ToNanoseconds() - _ts(start).ToNanoseconds()) / 1e9


class PodWorker:
    """Runs one pod (identified by uid) on this node."""

    def __init__(self, ctx: AgentContext, pod: core_pb2.Pod, record: PodRecord | None) -> None:
        self.ctx = ctx
        self.pod = pod
        self.uid = pod.metadata.uid
        self.record = record or PodRecord(pod.metadata.uid, pod.metadata.namespace, pod.metadata.name)
        self.sandbox = Sandbox(ctx.state.pod_dir(self.uid))
        self.statuses: dict[str, core_pb2.ContainerStatus] = {}
        self.processes: dict[str, ContainerProcess] = {}
        self.phase = pod.status.phase or "Pending"
        self.message = ""
        self.reason = ""
        self._terminate = asyncio.Event()
        self._dirty = asyncio.Event()
        self._written = asyncio.Event()  # set after every status write
        self._last_published: core_pb2.PodStatus | None = None
        self._ports: dict[str, int] = {}
        self._ready_probe: dict[str, bool] = {}
        self._started_probe: dict[str, bool] = {}
        self.exec_env: dict[str, tuple[dict[str, str], str]] = {}
        self.exec_identity: dict[str, identity.RunAs] = {}
        """Who each container runs as: exec'd commands run as the same user."""
        """Environment and working directory of each started container, for exec."""
        for c in [*pod.spec.init_containers, *pod.spec.containers]:
            rec = self.record.containers.get(c.name, ContainerRecord())
            st = core_pb2.ContainerStatus(name=c.name, restart_count=rec.restart_count, image=c.image)
            st.state.waiting.reason = "ContainerCreating"
            if rec.last_termination:
                self._set_terminated(st.last_state, rec.last_termination)
            self.statuses[c.name] = st
        if self.terminal:
            # A finished pod is never run again (also after an agent restart): keep what it reported.
            for st in [*pod.status.init_container_statuses, *pod.status.container_statuses]:
                if st.name in self.statuses:
                    self.statuses[st.name].CopyFrom(st)
            self.reason, self.message = pod.status.reason, pod.status.message
        self._draining = False
        self._vanished = False
        self._enforcement_fallback = False

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

    # ------------------------------------------------------------ access

    def container_names(self) -> list[str]:
        """Init containers, then main containers, as in the spec."""
        return [c.name for c in [*self.pod.spec.init_containers, *self.pod.spec.containers]]

    def log_state(self, name: str) -> ContainerLogState:
        """Where a container's logs stand, for the log follower."""
        rec = self.record.container(name)
        proc = self.processes.get(name)
        return ContainerLogState(
            instance=rec.restart_count,
            running=proc is not None and proc.running(),
            final=rec.done or self._terminate.is_set(),
        )

    def container_dir(self, name: str) -> Path:
        """Where a container's logs and shim state are."""
        return self.sandbox.container_dir(name)

    # --------------------------------------------------------------- run

    async def run(self) -> None:
        """Drive the pod until it is deleted (cancelling leaves its processes running)."""
        publisher = asyncio.create_task(self._publisher(), name=f"status-{self.pod.metadata.name}")
        lifecycle = asyncio.create_task(self._lifecycle(), name=f"pod-{self.pod.metadata.name}")
        try:
            if self.pod.metadata.HasField("deletion_timestamp"):
                self._terminate.set()
            await self._terminate.wait()
            lifecycle.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await lifecycle
            await self._kill_all()
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
        self.sandbox.create()
        if not self.record.start_time:
            self.record.start_time = now_rfc3339()
        self._save()
        volumes = await self._prepare_volumes()
        refresher = asyncio.create_task(self._refresh_volumes(), name=f"volumes-{self.pod.metadata.name}")
        try:
            await self._run_containers(volumes)
        finally:
            refresher.cancel()
            await asyncio.gather(refresher, return_exceptions=True)

    async def _refresh_volumes(self) -> None:
        """Keep configMap and secret volumes current with their objects (as the kubelet's sync does)."""
        if not any(v.HasField("config_map") or v.HasField("secret") for v in self.pod.spec.volumes):
            return
        while True:
            await asyncio.sleep(self.ctx.config.volume_refresh)
            try:
                await self.sandbox.prepare_volumes(self.ctx.client, self.pod)
            except (ConfigError, ApiError) as err:
                # Keep the last good content; the containers are already running with it.
                log.warning("pod %s: refreshing volumes: %s", self.pod.metadata.name, getattr(err, "message", err))

    async def _run_containers(self, volumes: dict[str, Any]) -> None:
        self.phase = "Pending"
        self._publish()
        policy = self.pod.spec.restart_policy or "Always"
        for c in self.pod.spec.init_containers:
            if self.record.container(c.name).done:
                continue
            ok = await self._supervise(c, volumes, init=True, policy="OnFailure" if policy == "Always" else policy)
            if not ok:
                self.phase = "Failed"
                self.reason, self.message = "InitContainerFailed", f'init container "{c.name}" failed'
                self._publish()
                return
        self.record.init_done = True
        self._save()
        self.phase = "Running"
        self._publish()
        results = await asyncio.gather(
            *(self._supervise(c, volumes, init=False, policy=policy) for c in self.pod.spec.containers)
        )
        self.phase = "Succeeded" if all(results) else "Failed"
        self._publish()

    async def _prepare_volumes(self) -> dict[str, Any]:
        delay = self.ctx.config.backoff_initial
        while True:
            try:
                return await self.sandbox.prepare_volumes(self.ctx.client, self.pod)
            except ConfigError as err:
                self._waiting_all("CreateContainerConfigError", str(err))
                self.ctx.recorder.event(self.pod, WARNING, "FailedMount", str(err))
            except ApiError as err:
                log.warning("pod %s: volumes: %s", self.pod.metadata.name, err.message)
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.ctx.config.backoff_max)

    # ------------------------------------------------------- containers

    async def _supervise(self, c: core_pb2.Container, volumes: dict[str, Any], *, init: bool, policy: str) -> bool:
        """Run a container until it should not be restarted; True if it ended successfully."""
        cfg = self.ctx.config
        rec = self.record.container(c.name)
        delay = cfg.backoff_initial
        while True:
            try:
                status = await self._run_once(c, volumes, rec, init=init)
            except ConfigError as err:
                # The container could not even be described (missing ConfigMap key...): retry, no restart counted.
                self._waiting(c.name, "CreateContainerConfigError", str(err))
                self.ctx.recorder.event(self.pod, WARNING, "Failed", f"Error: {err}")
                await asyncio.sleep(delay)
                delay = min(delay * 2, cfg.backoff_max)
                continue
            succeeded = status.exit_code == 0
            restart = policy == "Always" or (policy == "OnFailure" and not succeeded)
            if init and succeeded:
                restart = False
            if not restart:
                rec.done = True
                self._save()
                return succeeded
            if _seconds_between(rec.started_at, status.finished_at) >= cfg.backoff_reset:
                delay = cfg.backoff_initial
            if not status.started:
                self._waiting(c.name, "RunContainerError", status.message)
            else:
                self._waiting(
                    c.name,
                    "CrashLoopBackOff",
                    f"back-off {delay:g}s restarting failed container={c.name} pod={self.pod.metadata.name}",
                )
            self.ctx.recorder.event(self.pod, WARNING, "BackOff", f"Back-off restarting failed container {c.name}")
            await asyncio.sleep(delay)
            delay = min(delay * 2, cfg.backoff_max)
            rec.restart_count += 1
            self.statuses[c.name].restart_count = rec.restart_count
            self._save()

    async def _run_once(
        self, c: core_pb2.Container, volumes: dict[str, Any], rec: ContainerRecord, *, init: bool
    ) -> Termination:
        cdir = self.sandbox.container_dir(c.name)
        proc: ContainerProcess | None = None
        if rec.shim_pid:
            candidate = supervisor.adopt(rec.shim_pid, rec.shim_start, cdir)
            if candidate.running():
                proc = candidate
                log.info("pod %s: adopted container %s (shim pid %d)", self.pod.metadata.name, c.name, rec.shim_pid)
            else:
                status = await candidate.wait()  # finished while the agent was away
                return self._terminated(c.name, rec, status)
        env, cwd = await self._environment(c, volumes)
        cfg = self.ctx.config
        run_as = identity.resolve(
            self.pod,
            c,
            default_uid=cfg.run_as_user,
            default_gid=cfg.run_as_group,
            refuse_root=cfg.refuse_root,
        )
        self.exec_env[c.name] = (env, cwd)
        self.exec_identity[c.name] = run_as
        if proc is None:
            identity.give_to(str(self.sandbox.root / "work"), run_as)
            identity.give_to(str(self.sandbox.root / "volumes"), run_as)
            argv = [expand(a, env) for a in [*c.command, *c.args]]
            uid_limits = self._limits(c, rec.restart_count)
            spec = ShimSpec(
                argv=argv,
                env=env,
                cwd=cwd,
                state_dir=str(cdir),
                log_path=str(instance_log(cdir, rec.restart_count)),
                log_max_bytes=self.ctx.config.log_max_bytes,
                log_keep=self.ctx.config.log_keep,
                uid=run_as.uid,
                gid=run_as.gid,
                groups=list(run_as.groups),
                cgroup_procs=uid_limits[0],
                rlimit_as=uid_limits[1],
            )
            prune_instances(cdir, keep_from=rec.restart_count - 1)  # this and the previous instance's logs
            proc = supervisor.start(spec, self.ctx.launcher)
            rec.shim_pid, rec.shim_start, rec.started_at = proc.shim_pid, proc.shim_start, now_rfc3339()
            self._save()
            # Report Running only once the workload really runs (not merely its shim).
            if await proc.wait_started():
                self.ctx.recorder.event(self.pod, NORMAL, "Started", f"Started container {c.name}")
        self.processes[c.name] = proc
        probes: list[asyncio.Task[None]] = []
        if proc.started is not None:
            st = self.statuses[c.name]
            st.ClearField("state")
            st.state.running.started_at.CopyFrom(_ts(rec.started_at))
            st.container_id = f"pid://{proc.shim_pid}"
            st.started = True
            probes = [] if init else self._start_probes(c, proc, env, cwd)
            self._refresh_ready(c)
            self._publish()
        try:
            status = await proc.wait()
        finally:
            for task in probes:
                task.cancel()
            await asyncio.gather(*probes, return_exceptions=True)
            self.processes.pop(c.name, None)
        if not status.started:
            self.ctx.recorder.event(self.pod, WARNING, "Failed", f"Error: {status.message}")
        return self._terminated(c.name, rec, status)

    def _limits(self, c: core_pb2.Container, instance: int) -> tuple[list[str], int]:
        """How the shim enforces the container's limits: cgroup.procs files to join, or an address-space
        rlimit in bytes (0: none)."""
        memory = c.resources.limits.get("memory")
        cpu = c.resources.limits.get("cpu")
        cpu_request = c.resources.requests.get("cpu")
        limits = Limits(
            memory_bytes=int(parse_quantity(memory)) if memory else 0,
            cpu_millicores=int(parse_quantity(cpu) * 1000) if cpu else 0,
            cpu_request_millicores=int(parse_quantity(cpu_request) * 1000) if cpu_request else 0,
        )
        driver = self.ctx.cgroups
        if driver is not None:
            try:
                return driver.create(self.uid, c.name, instance, limits), 0
            except OSError as err:
                log.warning("pod %s: cgroups for %s: %s; falling back to rlimit", self.pod.metadata.name, c.name, err)
                self._enforcement_fallback = True
        # setrlimit is the fallback: address space is a loose proxy for memory, so allow headroom.
        return [], limits.memory_bytes * 2

    def enforcement(self) -> str:
        """The resource enforcement this pod gets, as reported in its status."""
        containers = [*self.pod.spec.init_containers, *self.pod.spec.containers]
        has_memory = any("memory" in c.resources.limits for c in containers)
        has_any = has_memory or any("cpu" in c.resources.limits for c in containers)
        if not has_any:
            return "none"
        if self.ctx.cgroups is not None and not self._enforcement_fallback:
            return self.ctx.cgroups.name
        return "rlimit" if has_memory else "none"

    async def _environment(self, c: core_pb2.Container, volumes: dict[str, Any]) -> tuple[dict[str, str], str]:
        extra = self.sandbox.link_mounts(c, volumes)
        for port in c.ports:
            if port.container_port == 0 or port.name:
                key = port.name or f"port{len(self._ports)}"
                if port.container_port == 0 and key not in self._ports:
                    self._ports[key] = self.ctx.ports.allocate()
                if port.name:
                    extra[f"PORT_{env_name(port.name)}"] = str(self._ports.get(key, port.container_port))
        extra["NAVARCH_SANDBOX"] = str(self.sandbox.root)
        if self.pod.spec.enable_service_links:
            extra = {**service_env(self.ctx.services(self.pod.metadata.namespace)), **extra}
        cfg = self.ctx.config
        env = await container_env(
            self.ctx.client, self.pod, c, node_name=cfg.node_name, node_ip=cfg.node_ip, extra=extra
        )
        cwd = c.working_dir or str(self.sandbox.work)
        if c.working_dir:
            with contextlib.suppress(OSError):  # the shim reports an unusable directory precisely
                Path(c.working_dir).mkdir(parents=True, exist_ok=True)
        return env, cwd

    def _terminated(self, name: str, rec: ContainerRecord, status: Termination) -> Termination:
        driver = self.ctx.cgroups
        if driver is not None:
            if status.started and driver.oom_killed(self.uid, name, rec.restart_count):
                status = dataclasses.replace(status, reason="OOMKilled")
            driver.remove_instance(self.uid, name, rec.restart_count)
        term = dataclasses.replace(status, started_at=rec.started_at, container_id=f"pid://{rec.shim_pid}")
        rec.last_termination = term
        rec.shim_pid = rec.shim_start = 0
        self._save()
        st = self.statuses[name]
        if st.state.HasField("terminated"):
            st.last_state.CopyFrom(st.state)
        st.ClearField("state")
        self._set_terminated(st.state, term)
        st.ready = False
        st.started = False
        self._publish()
        return term

    @staticmethod
    def _set_terminated(state: core_pb2.ContainerState, term: Termination) -> None:
        t = state.terminated
        t.exit_code, t.signal = term.exit_code, term.signal
        t.reason, t.message = term.reason, term.message
        t.container_id = term.container_id
        if term.started_at:
            t.started_at.CopyFrom(_ts(term.started_at))
        if term.finished_at:
            t.finished_at.CopyFrom(_ts(term.finished_at))

    def _waiting(self, name: str, reason: str, message: str) -> None:
        st = self.statuses[name]
        if st.state.HasField("terminated"):
            st.last_state.CopyFrom(st.state)
        st.ClearField("state")
        st.state.waiting.reason, st.state.waiting.message = reason, message
        st.ready = False
        self._publish()

    def _waiting_all(self, reason: str, message: str) -> None:
        for name in self.statuses:
            self._waiting(name, reason, message)

    # ------------------------------------------------------------ probes

    def _start_probes(
        self, c: core_pb2.Container, proc: ContainerProcess, env: dict[str, str], cwd: str
    ) -> list[asyncio.Task[None]]:
        ports = {p.name: (self._ports.get(p.name) or p.container_port) for p in c.ports if p.name}
        host = self.ctx.config.node_ip  # the pod's IP, as Kubernetes probes it
        tasks: list[asyncio.Task[None]] = []
        has_startup = c.HasField("startup_probe")
        self._started_probe[c.name] = not has_startup
        self._ready_probe[c.name] = not c.HasField("readiness_probe")

        def start_liveness_and_readiness() -> None:
            if c.HasField("liveness_probe"):

                def on_liveness(ok: bool, message: str) -> None:
                    if not ok:
                        self.ctx.recorder.event(self.pod, WARNING, "Unhealthy", f"Liveness probe failed: {message}")
                        self.ctx.recorder.event(
                            self.pod, NORMAL, "Killing", f"Container {c.name} failed liveness probe, will be restarted"
                        )
                        tasks.append(asyncio.create_task(self._stop(proc, self._grace_seconds())))

                runner = ProbeRunner(
                    "liveness", c.liveness_probe, on_liveness, host=host, ports=ports, env=env, cwd=cwd, initial=True
                )
                tasks.append(asyncio.create_task(runner.run(), name=f"liveness-{c.name}"))
            if c.HasField("readiness_probe"):

                def on_readiness(ok: bool, message: str) -> None:
                    self._ready_probe[c.name] = ok
                    if not ok:
                        self.ctx.recorder.event(self.pod, WARNING, "Unhealthy", f"Readiness probe failed: {message}")
                    self._refresh_ready(c)

                runner = ProbeRunner(
                    "readiness",
                    c.readiness_probe,
                    on_readiness,
                    host=host,
                    ports=ports,
                    env=env,
                    cwd=cwd,
                    initial=False,
                )
                tasks.append(asyncio.create_task(runner.run(), name=f"readiness-{c.name}"))

        if has_startup:

            def on_startup(ok: bool, message: str) -> None:
                if ok:
                    self._started_probe[c.name] = True
                    self._refresh_ready(c)
                    start_liveness_and_readiness()
                else:
                    self.ctx.recorder.event(self.pod, WARNING, "Unhealthy", f"Startup probe failed: {message}")
                    tasks.append(asyncio.create_task(self._stop(proc, self._grace_seconds())))

            runner = ProbeRunner(
                "startup",
                c.startup_probe,
                on_startup,
                host=host,
                ports=ports,
                env=env,
                cwd=cwd,
                initial=False,
                fail_before_success=True,
            )
            tasks.append(asyncio.create_task(runner.run(), name=f"startup-{c.name}"))
        else:
            start_liveness_and_readiness()
        return tasks

    def _refresh_ready(self, c: core_pb2.Container) -> None:
        st = self.statuses[c.name]
        st.started = self._started_probe.get(c.name, True) and st.state.HasField("running")
        st.ready = bool(
            st.state.HasField("running")
            and self._started_probe.get(c.name, True)
            and self._ready_probe.get(c.name, True)
        )
        self._publish()

    # --------------------------------------------------------- stopping

    def _grace_seconds(self) -> float:
        if self._vanished:
            return 0.0  # no object left to wait for: nobody may rely on this pod any more
        m = self.pod.metadata
        if m.HasField("deletion_grace_period_seconds"):
            return float(m.deletion_grace_period_seconds)
        spec = self.pod.spec
        return float(spec.termination_grace_period_seconds if spec.HasField("termination_grace_period_seconds") else 30)

    async def _stop(self, proc: ContainerProcess, grace: float) -> None:
        """SIGTERM the process group; SIGKILL after ``grace`` seconds."""
        proc.signal_group(signal.SIGTERM)
        try:
            async with asyncio.timeout(grace):
                while proc.running():
                    await proc._wait_exit(0.1)
        except TimeoutError:
            proc.signal_group(signal.SIGKILL)

    async def _kill_all(self) -> None:
        """Graceful termination of every running container: preStop, SIGTERM, grace period, SIGKILL."""
        grace = self._grace_seconds()
        procs: dict[str, ContainerProcess] = dict(self.processes)
        for name, rec in self.record.containers.items():
            if name not in procs and rec.shim_pid:
                candidate = supervisor.adopt(rec.shim_pid, rec.shim_start, self.sandbox.container_dir(name))
                if candidate.running():
                    procs[name] = candidate
        if not procs:
            return
        log.info(
            "pod %s/%s: stopping %s with a %gs grace period",
            self.pod.metadata.namespace,
            self.pod.metadata.name,
            ", ".join(procs),
            grace,
        )
        self.ctx.recorder.event(self.pod, NORMAL, "Killing", f"Stopping containers ({grace:g}s grace period)")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        hooks = [self._pre_stop(c, deadline) for c in self.pod.spec.containers if c.name in procs]
        if hooks and grace > 0:
            await asyncio.gather(*hooks, return_exceptions=True)
        await asyncio.gather(*(self._stop(p, max(0.0, deadline - loop.time())) for p in procs.values()))
        for name, p in procs.items():
            status = await p.wait()
            rec = self.record.container(name)
            self._terminated(name, rec, status)

    async def _pre_stop(self, c: core_pb2.Container, deadline: float) -> None:
        hook = c.lifecycle.pre_stop
        if not c.lifecycle.HasField("pre_stop"):
            return
        probe = core_pb2.Probe()
        for field in ("exec", "http_get", "tcp_socket"):
            if hook.HasField(field):
                getattr(probe, field).CopyFrom(getattr(hook, field))
        probe.timeout_seconds = max(1, int(deadline - asyncio.get_running_loop().time()))
        env, cwd = await self._environment(c, {})
        ok, message = await check(probe, host=self.ctx.config.node_ip, ports={}, env=env, cwd=cwd)
        if not ok:
            self.ctx.recorder.event(self.pod, WARNING, "FailedPreStopHook", f"PreStopHook failed: {message}")

    async def _report_shutdown(self) -> None:
        """Mark the pod Failed because its node shut down, and wait (bounded) until that is written."""
        if not self.terminal:
            self.phase = "Failed"
            self.reason, self.message = "Terminated", "Pod was terminated in response to node shutdown."
        for rec in self.record.containers.values():
            rec.done = True
        self._save()
        self._publish()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(10):
                while self._last_published != self.build_status():
                    self._written.clear()
                    await self._written.wait()

    async def _finish_deletion(self) -> None:
        """Remove the Pod from the API (grace 0) once its processes are gone, then the sandbox."""
        # Already gone, or a new pod of the same name (uid precondition fails): not ours to delete.
        with contextlib.suppress(NotFoundError, ConflictError):
            await self.ctx.client.delete(
                core_pb2.Pod, self.pod.metadata.name, self.pod.metadata.namespace, grace_period_seconds=0, uid=self.uid
            )
        self.sandbox.remove()
        if self.ctx.cgroups is not None:
            self.ctx.cgroups.remove_pod(self.uid)

    # ----------------------------------------------------------- status

    def _save(self) -> None:
        self.ctx.state.save(self.record)

    def _publish(self) -> None:
        self._dirty.set()

    def build_status(self) -> core_pb2.PodStatus:
        """The Pod status as this worker sees it now."""
        cfg = self.ctx.config
        status = core_pb2.PodStatus(
            phase=self.phase,
            host_ip=cfg.node_ip,
            pod_ip=cfg.node_ip,
            qos_class=self.pod.status.qos_class,
            resource_enforcement=self.enforcement(),
            message=self.message,
            reason=self.reason,
        )
        status.pod_ips.add(ip=cfg.node_ip)
        if self.record.start_time:
            status.start_time.CopyFrom(_ts(self.record.start_time))
        names_init = [c.name for c in self.pod.spec.init_containers]
        names_main = [c.name for c in self.pod.spec.containers]
        status.init_container_statuses.extend(self.statuses[n] for n in names_init)
        status.container_statuses.extend(self.statuses[n] for n in names_main)
        ready = bool(names_main) and all(self.statuses[n].ready for n in names_main)
        initialized = self.record.init_done or not names_init
        previous = {c.type: c for c in self.pod.status.conditions}
        for kind, ok in (
            ("PodScheduled", True),
            ("Initialized", initialized),
            ("ContainersReady", ready),
            ("Ready", ready),
        ):
            cond = meta_pb2.Condition(type=kind, status="True" if ok else "False")
            old = previous.get(kind)
            if old is not None and old.status == cond.status:
                cond.last_transition_time.CopyFrom(old.last_transition_time)
            else:
                cond.last_transition_time.FromDatetime(datetime.now(UTC).replace(microsecond=0))
            if not ok and kind in ("ContainersReady", "Ready"):
                cond.reason = "ContainersNotReady"
            status.conditions.append(cond)
        return status

    async def _publisher(self) -> None:
        delay = 0.1
        while True:
            await self._dirty.wait()
            self._dirty.clear()
            status = self.build_status()
            if status == self._last_published:
                continue
            pod = core_pb2.Pod(api_version="v1", kind="Pod")
            pod.metadata.name, pod.metadata.namespace = self.pod.metadata.name, self.pod.metadata.namespace
            pod.status.CopyFrom(status)
            try:
                out = await self.ctx.client.update_status(pod)
                if out.metadata.uid != self.uid:
                    return  # a new pod of the same name: this worker must not write its status
                self._last_published = status
                self.pod.status.CopyFrom(out.status)
                self._written.set()
                delay = 0.1
            except NotFoundError:
                return
            except ApiError as err:
                log.warning("pod %s: status: %s", self.pod.metadata.name, err.message)
                self._dirty.set()
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
