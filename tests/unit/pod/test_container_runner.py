"""The ContainerRunner with fake processes and a recording sleep (no processes, no cluster): restart policy
and CrashLoopBackOff, configuration errors, the order of hooks, adoption after an agent restart, the
termination sequence and probe-driven restarts.

Plausible bugs each test catches: the back-off not doubling or a configuration error counted as a restart
(test_crash_loop...); hooks called out of order or ``stop`` skipped (test_hooks_run...); an adopted process
started a second time (test_a_running_instance_is_adopted...); SIGKILL before the grace period or a preStop
after SIGTERM (test_terminate...); a liveness failure killing instead of stopping gracefully."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

from controlplane.api.pb import core_pb2
from nodeagent.pod.container import ContainerRunner
from nodeagent.pod.hooks import ContainerHook, Instance
from nodeagent.pod.restart import BackOff
from nodeagent.sandbox import ConfigError
from nodeagent.shimspec import Termination
from nodeagent.state import ContainerRecord
from tests.helpers import eventually
from tests.unit.pod.fakes import FakeProcess, FakeProcesses, RecordedSleep, container, pod


class Recording(ContainerHook):
    """Records every step it is called for (and what it saw)."""

    def __init__(self, name: str, calls: list[str]) -> None:
        self.name = name
        self.calls = calls
        self.adopted: list[bool] = []

    async def prestart(self, inst: Instance) -> None:
        self.calls.append(f"{self.name}.prestart")
        self.adopted.append(inst.adopted)

    async def poststart(self, inst: Instance) -> None:
        self.calls.append(f"{self.name}.poststart")

    async def prekill(self, inst: Instance, deadline: float) -> None:
        assert inst.process is None or not [s for s in getattr(inst.process, "signals", [])], "preStop after a signal"
        self.calls.append(f"{self.name}.prekill")

    def exited(self, inst: Instance, termination: Termination) -> Termination:
        self.calls.append(f"{self.name}.exited")
        return termination

    async def stop(self, inst: Instance) -> None:
        self.calls.append(f"{self.name}.stop")


class Harness:
    def __init__(
        self,
        tmp_path: Path,
        processes: FakeProcesses,
        *,
        policy: str = "Always",
        hooks: tuple[ContainerHook, ...] = (),
        record: ContainerRecord | None = None,
        init: bool = False,
    ) -> None:
        self.processes = processes
        self.sleep = RecordedSleep()
        self.events: list[str] = []
        self.waiting: list[str] = []
        self.record = record or ContainerRecord()
        c = container()
        p = pod(c)
        self.status = core_pb2.ContainerStatus(name=c.name)
        self.runner = ContainerRunner(
            container=c,
            init=init,
            policy=policy,
            pod=lambda: p,
            state_dir=tmp_path,
            record=self.record,
            status=self.status,
            hooks=hooks,
            processes=processes,
            backoff=BackOff(initial=1, cap=4, reset_after=600),
            grace=lambda: 5.0,
            event=lambda t, reason, m: self.events.append(reason),
            publish=self._published,
            save=lambda: None,
            sleep=self.sleep,
        )

    def _published(self) -> None:
        if self.status.state.HasField("waiting"):
            self.waiting.append(self.status.state.waiting.reason)


async def test_crash_loop_back_off_doubles_to_its_cap_and_counts_restarts(tmp_path: Path) -> None:
    h = Harness(tmp_path, FakeProcesses(exits=[1, 1, 1, 1, 0]), policy="OnFailure")
    async with asyncio.timeout(5):
        assert await h.runner.run() is True
    assert h.sleep.delays == [1, 2, 4, 4]
    assert h.record.restart_count == 4 and h.status.restart_count == 4 and h.record.done
    assert h.events.count("BackOff") == 4 and h.events.count("Started") == 5
    assert "CrashLoopBackOff" in h.waiting
    assert h.record.last_termination is not None and h.record.last_termination.exit_code == 0


async def test_never_runs_once_and_keeps_how_it_ended(tmp_path: Path) -> None:
    h = Harness(tmp_path, FakeProcesses(exits=[3]), policy="Never")
    async with asyncio.timeout(5):
        assert await h.runner.run() is False
    assert len(h.processes.started) == 1 and h.sleep.delays == []
    assert h.status.state.terminated.exit_code == 3 and h.status.state.terminated.reason == "Error"
    assert h.status.ready is False and h.record.shim_pid == 0


async def test_a_configuration_error_waits_and_retries_without_counting_a_restart(tmp_path: Path) -> None:
    failures = [ConfigError('configmap "app" not found'), ConfigError('configmap "app" not found')]

    class Flaky(ContainerHook):
        async def prestart(self, inst: Instance) -> None:
            if failures:
                raise failures.pop()

    h = Harness(tmp_path, FakeProcesses(exits=[0]), policy="OnFailure", hooks=(Flaky(),))
    async with asyncio.timeout(5):
        assert await h.runner.run() is True
    assert h.sleep.delays == [1, 2] and h.record.restart_count == 0
    assert h.waiting.count("CreateContainerConfigError") == 2
    assert len(h.processes.started) == 1


async def test_a_process_that_cannot_start_is_a_run_container_error(tmp_path: Path) -> None:
    processes = FakeProcesses()
    processes.start = lambda spec: FakeProcess(5, starts=False)  # type: ignore[method-assign]
    h = Harness(tmp_path, processes, policy="Never")
    async with asyncio.timeout(5):
        assert await h.runner.run() is False
    assert h.status.state.terminated.reason == "StartError" and "Failed" in h.events


async def test_hooks_run_in_order_around_each_instance(tmp_path: Path) -> None:
    calls: list[str] = []
    h = Harness(
        tmp_path, FakeProcesses(exits=[0]), policy="Never", hooks=(Recording("a", calls), Recording("b", calls))
    )
    async with asyncio.timeout(5):
        await h.runner.run()
    assert calls == [
        "a.prestart",
        "b.prestart",
        "a.poststart",
        "b.poststart",
        "b.stop",
        "a.stop",
        "a.exited",
        "b.exited",
    ]
    spec = h.processes.started[0]
    assert spec.argv == [] and spec.state_dir == str(tmp_path), "the spec comes from the instance the hooks shaped"


async def test_a_running_instance_is_adopted_not_started(tmp_path: Path) -> None:
    calls: list[str] = []
    hook = Recording("a", calls)
    survivor = FakeProcess(7)
    processes = FakeProcesses(adoptable={7: survivor})
    h = Harness(tmp_path, processes, policy="Never", hooks=(hook,), record=ContainerRecord(shim_pid=7, shim_start=1007))
    task = asyncio.create_task(h.runner.run())
    await eventually(lambda: h.runner.process is survivor)
    assert processes.started == [] and hook.adopted == [True]
    assert h.status.state.HasField("running")
    survivor.finish(0)
    async with asyncio.timeout(5):
        assert await task is True


async def test_an_instance_that_ended_while_the_agent_was_away_is_recorded_not_rerun(tmp_path: Path) -> None:
    calls: list[str] = []
    h = Harness(
        tmp_path, FakeProcesses(), policy="Never", hooks=(Recording("a", calls),), record=ContainerRecord(shim_pid=8)
    )
    async with asyncio.timeout(5):
        assert await h.runner.run() is False
    assert h.processes.started == [] and calls == ["a.exited"]
    assert h.record.last_termination is not None and h.record.last_termination.exit_code == 137


def _keep(processes: FakeProcesses, *, ignore_term: bool) -> None:
    def on_start(proc: FakeProcess) -> None:
        proc.ignore_term = ignore_term
        processes.adoptable[proc.shim_pid] = proc

    processes.on_start = on_start


async def test_terminate_runs_prestop_then_sigterm_then_sigkill_at_the_deadline(tmp_path: Path) -> None:
    calls: list[str] = []
    processes = FakeProcesses()
    _keep(processes, ignore_term=True)
    h = Harness(tmp_path, processes, hooks=(Recording("a", calls),))
    task = asyncio.create_task(h.runner.run())
    await eventually(lambda: h.runner.process is not None)
    (proc,) = processes.processes
    task.cancel()  # as the worker does before terminating: the process keeps running
    await asyncio.gather(task, return_exceptions=True)
    assert proc.running() and proc.signals == []
    loop = asyncio.get_running_loop()
    began = loop.time()
    async with asyncio.timeout(5):
        await h.runner.terminate(began + 0.2)
    assert "a.prekill" in calls
    assert proc.signals == [signal.SIGTERM, signal.SIGKILL]
    assert loop.time() - began >= 0.2, "SIGKILL came before the deadline"
    assert h.record.last_termination is not None and h.record.last_termination.exit_code == 137


async def test_terminate_without_time_left_skips_prestop(tmp_path: Path) -> None:
    calls: list[str] = []
    processes = FakeProcesses()
    _keep(processes, ignore_term=False)
    h = Harness(tmp_path, processes, hooks=(Recording("a", calls),))
    task = asyncio.create_task(h.runner.run())
    await eventually(lambda: h.runner.process is not None)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    async with asyncio.timeout(5):
        await h.runner.terminate(asyncio.get_running_loop().time())
    assert "a.prekill" not in calls
    assert processes.processes[0].signals == [signal.SIGTERM]


async def test_a_probe_asking_for_a_restart_stops_gracefully_and_the_policy_decides(tmp_path: Path) -> None:
    class FailsLiveness(ContainerHook):
        async def poststart(self, inst: Instance) -> None:
            if inst.restart_count == 0:
                inst.events.restart()

    processes = FakeProcesses(exits=[None, 0])
    h = Harness(tmp_path, processes, policy="OnFailure", hooks=(FailsLiveness(),))
    async with asyncio.timeout(5):
        assert await h.runner.run() is True
    first, second = processes.processes
    assert first.signals == [signal.SIGTERM], "a liveness failure stops gracefully (SIGTERM first)"
    assert second.signals == [] and h.record.restart_count == 1


async def test_started_and_ready_follow_the_probes(tmp_path: Path) -> None:
    class Probes(ContainerHook):
        async def poststart(self, inst: Instance) -> None:
            inst.events.probe_changed("startup", False)
            inst.events.probe_changed("readiness", False)

    processes = FakeProcesses()
    _keep(processes, ignore_term=False)
    h = Harness(tmp_path, processes, hooks=(Probes(),))
    task = asyncio.create_task(h.runner.run())
    await eventually(lambda: h.runner.process is not None)
    assert (h.status.started, h.status.ready) == (False, False)
    h.runner.probe_changed("startup", True)
    assert (h.status.started, h.status.ready) == (True, False)
    h.runner.probe_changed("readiness", True)
    assert (h.status.started, h.status.ready) == (True, True)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
