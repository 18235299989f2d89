"""One container of a pod, supervised: start (or adopt) an instance through the hooks, wait for it to end,
restart it per the restart policy with CrashLoopBackOff, and stop it on purpose when the pod goes.

::

    ┌─> prestart hooks ─> start (or adopt) ─> poststart hooks ─> wait ─> stop hooks ─> exited hooks ─┐
    │        │ ConfigError: waiting CreateContainerConfigError, retried with back-off, no restart   │
    └─── back-off (restart policy says again) <─────────────────────────────────────────────────────┘

The runner owns its container's status (``ContainerStatus``) and record (``ContainerRecord``): every change
goes through ``publish`` and ``save``, which the worker provides. Cancelling ``run`` leaves the process
running (a restarted agent adopts it); ``terminate`` is how a process is stopped.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import signal
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

from google.protobuf.timestamp_pb2 import Timestamp

from controlplane.api.pb import core_pb2
from controlplane.client.events import NORMAL, WARNING
from nodeagent.identity import RunAs
from nodeagent.pod.hooks import ContainerHook, Instance
from nodeagent.pod.process import Process, Processes
from nodeagent.pod.restart import BackOff, should_restart
from nodeagent.sandbox import ConfigError
from nodeagent.shimspec import Termination, now_rfc3339
from nodeagent.state import ContainerRecord

log = logging.getLogger(__name__)


def timestamp(rfc3339: str) -> Timestamp:
    """A protobuf Timestamp from RFC 3339 text (empty: the zero Timestamp)."""
    ts = Timestamp()
    if rfc3339:
        ts.FromJsonString(rfc3339)
    return ts


def seconds_between(start: str, end: str) -> float:
    """Seconds from one RFC 3339 time to another (0 if either is unknown)."""
    if not start or not end:
        return 0.0
    return (timestamp(end).ToNanoseconds() - timestamp(start).ToNanoseconds()) / 1e9


def set_terminated(state: core_pb2.ContainerState, term: Termination) -> None:
    """Fill a ContainerState's ``terminated`` from a Termination."""
    t = state.terminated
    t.exit_code, t.signal = term.exit_code, term.signal
    t.reason, t.message = term.reason, term.message
    t.container_id = term.container_id
    if term.started_at:
        t.started_at.CopyFrom(timestamp(term.started_at))
    if term.finished_at:
        t.finished_at.CopyFrom(timestamp(term.finished_at))


class ContainerRunner:
    """Runs one container until it should not run again."""

    def __init__(
        self,
        *,
        container: core_pb2.Container,
        init: bool,
        policy: str,
        pod: Callable[[], core_pb2.Pod],
        state_dir: Path,
        record: ContainerRecord,
        status: core_pb2.ContainerStatus,
        hooks: Sequence[ContainerHook],
        processes: Processes,
        backoff: BackOff,
        grace: Callable[[], float],
        event: Callable[[str, str, str], None],
        publish: Callable[[], None],
        save: Callable[[], None],
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.container = container
        self.init = init
        self.policy = policy
        self._pod = pod
        self.state_dir = state_dir
        self.record = record
        self.status = status
        self.hooks = list(hooks)
        self.processes = processes
        self.backoff = backoff
        self._grace = grace
        self._event = event
        self._publish = publish
        self._save = save
        self._sleep = sleep
        self.instance: Instance | None = None
        """The latest instance that got past its prestart hooks (for exec: its environment and user)."""
        self.process: Process | None = None
        """The running instance's process, while this runner waits for it."""
        self._probe = {"startup": True, "readiness": True}
        self._stopping: set[asyncio.Task[None]] = set()
        self._reloading = False
        """The running instance is being stopped to start again with a new configuration."""
        if record.last_termination:
            set_terminated(status.last_state, record.last_termination)

    @property
    def name(self) -> str:
        return self.container.name

    # ------------------------------------------------------------ InstanceEvents (for the hooks)

    def probe_changed(self, kind: str, ok: bool) -> None:
        self._probe[kind] = ok
        self._refresh_ready()

    def reload(self) -> None:
        self._reloading = True
        self.restart()

    def restart(self) -> None:
        proc = self.process
        if proc is not None:
            task = asyncio.create_task(self._signal_stop(proc, self._grace()), name=f"restart-{self.name}")
            self._stopping.add(task)
            task.add_done_callback(self._stopping.discard)

    def event(self, type_: str, reason: str, message: str) -> None:
        self._event(type_, reason, message)

    # ------------------------------------------------------------ supervision

    async def run(self) -> bool:
        """Run the container until it should not be restarted; True if it ended successfully."""
        rec = self.record
        delay = self.backoff.initial
        while True:
            try:
                term = await self._run_once()
            except ConfigError as err:
                # The container could not even be described (missing ConfigMap key...): retry, no restart counted.
                self.waiting("CreateContainerConfigError", str(err))
                self._event(WARNING, "Failed", f"Error: {err}")
                await self._sleep(delay)
                delay = self.backoff.after(delay)
                continue
            succeeded = term.exit_code == 0
            if self._reloading:
                # Stopped for a configuration change: start again at once (no back-off, whatever the policy).
                self._reloading = False
                rec.restart_count += 1
                self.status.restart_count = rec.restart_count
                self._save()
                continue
            if not should_restart(self.policy, succeeded=succeeded, init=self.init):
                rec.done = True
                self._save()
                return succeeded
            delay = self.backoff.delay(delay, seconds_between(term.started_at, term.finished_at))
            if not term.started:
                self.waiting("RunContainerError", term.message)
            else:
                pod = self._pod().metadata.name
                self.waiting(
                    "CrashLoopBackOff", f"back-off {delay:g}s restarting failed container={self.name} pod={pod}"
                )
            self._event(WARNING, "BackOff", f"Back-off restarting failed container {self.name}")
            await self._sleep(delay)
            delay = self.backoff.after(delay)
            rec.restart_count += 1
            self.status.restart_count = rec.restart_count
            self._save()

    async def _run_once(self) -> Termination:
        rec = self.record
        inst = Instance(self._pod(), self.container, self.init, rec.restart_count, self.state_dir, events=self)
        proc: Process | None = None
        if rec.shim_pid:
            candidate = self.processes.adopt(rec.shim_pid, rec.shim_start, self.state_dir)
            if not candidate.running():
                return self._ended(inst, await candidate.wait())  # finished while the agent was away
            proc, inst.adopted = candidate, True
            log.info("pod %s: adopted container %s (shim pid %d)", inst.pod.metadata.name, self.name, rec.shim_pid)
        for hook in self.hooks:
            await hook.prestart(inst)
        self.instance = inst
        del self.status.allocated_ports[:]
        for port in self.container.ports:
            if port.name in inst.allocated:
                self.status.allocated_ports.add(
                    name=port.name, container_port=inst.allocated[port.name], protocol=port.protocol or "TCP"
                )
        try:
            if proc is None:
                proc = self.processes.start(inst.shim_spec())
                rec.shim_pid, rec.shim_start, rec.started_at = proc.shim_pid, proc.shim_start, now_rfc3339()
                self._save()
                # Report Running only once the workload really runs (not merely its shim).
                if await proc.wait_started():
                    self._event(NORMAL, "Started", f"Started container {self.name}")
            inst.process = self.process = proc
            if proc.started is not None:
                st = self.status
                st.ClearField("state")
                st.state.running.started_at.CopyFrom(timestamp(rec.started_at))
                st.container_id = f"pid://{proc.shim_pid}"
                self._probe = {"startup": True, "readiness": True}
                for hook in self.hooks:
                    await hook.poststart(inst)
                self._refresh_ready()
            term = await proc.wait()
        finally:
            self.process = None
            for hook in reversed(self.hooks):
                await hook.stop(inst)
            for task in list(self._stopping):
                task.cancel()
            await asyncio.gather(*self._stopping, return_exceptions=True)
        if not term.started:
            self._event(WARNING, "Failed", f"Error: {term.message}")
        return self._ended(inst, term)

    def _ended(self, inst: Instance, term: Termination) -> Termination:
        for hook in self.hooks:
            term = hook.exited(inst, term)
        rec = self.record
        term = dataclasses.replace(term, started_at=rec.started_at, container_id=f"pid://{rec.shim_pid}")
        rec.last_termination = term
        rec.shim_pid = rec.shim_start = 0
        self._save()
        st = self.status
        if st.state.HasField("terminated"):
            st.last_state.CopyFrom(st.state)
        st.ClearField("state")
        set_terminated(st.state, term)
        st.ready = st.started = False
        self._publish()
        return term

    # ------------------------------------------------------------ stopping

    def leftover(self) -> Process | None:
        """The instance's process as the record knows it, if it still runs (also after ``run`` was cancelled)."""
        rec = self.record
        if not rec.shim_pid:
            return None
        proc = self.processes.adopt(rec.shim_pid, rec.shim_start, self.state_dir)
        return proc if proc.running() else None

    def _stopping_instance(self) -> Instance:
        return self.instance or Instance(
            self._pod(), self.container, self.init, self.record.restart_count, self.state_dir, events=self
        )

    async def prekill(self, deadline: float) -> None:
        """Run the prekill hooks (preStop) of the running instance, if there is time before ``deadline``."""
        if self.leftover() is None or deadline <= asyncio.get_running_loop().time():
            return
        if self.instance is None:
            return  # no prestart ran (so no identity resolved): no hook runs rather than one as the agent
        inst = self._stopping_instance()
        await asyncio.gather(*(h.prekill(inst, deadline) for h in self.hooks), return_exceptions=True)

    async def kill(self, deadline: float) -> None:
        """SIGTERM the running instance, SIGKILL at ``deadline`` (event loop time); record how it ended."""
        proc = self.leftover()
        if proc is None:
            return
        await self._signal_stop(proc, max(0.0, deadline - asyncio.get_running_loop().time()))
        self._ended(self._stopping_instance(), await proc.wait())

    async def terminate(self, deadline: float) -> None:
        """Stop the running instance on purpose: ``prekill`` then ``kill``."""
        await self.prekill(deadline)
        await self.kill(deadline)

    @staticmethod
    async def _signal_stop(proc: Process, grace: float) -> None:
        """SIGTERM the process group; SIGKILL after ``grace`` seconds."""
        proc.signal_group(signal.SIGTERM)
        try:
            async with asyncio.timeout(grace):
                while proc.running():
                    await proc.wait_exit(0.1)
        except TimeoutError:
            proc.signal_group(signal.SIGKILL)

    # ------------------------------------------------------------ status

    def waiting(self, reason: str, message: str) -> None:
        """The container waits (to be created, to be restarted)."""
        st = self.status
        if st.state.HasField("terminated"):
            st.last_state.CopyFrom(st.state)
        st.ClearField("state")
        st.state.waiting.reason, st.state.waiting.message = reason, message
        st.ready = False
        self._publish()

    def _refresh_ready(self) -> None:
        st = self.status
        running = st.state.HasField("running")
        st.started = self._probe["startup"] and running
        st.ready = running and self._probe["startup"] and self._probe["readiness"]
        self._publish()

    def identity(self) -> RunAs | None:
        """Who the latest instance runs as."""
        return self.instance.run_as if self.instance is not None else None
