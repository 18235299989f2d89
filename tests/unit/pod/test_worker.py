"""The PodWorker's phase machine with fake processes and a fake API client (no processes, no cluster):
init containers in order before the main ones, a failed init container failing the pod, finished pods
never run again, deletion stopping everything and deleting with the pod's uid, draining reporting Failed.

Plausible bugs: main containers started while an init container still runs; a pod whose init container
failed for good reported Running; a finished pod started again after an agent restart; the Pod deleted
before its processes were gone, or without the uid precondition (deleting a new pod of the same name)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path

from controlplane.api.pb import core_pb2
from nodeagent.config import AgentConfig
from nodeagent.pod.context import AgentContext, PortAllocator
from nodeagent.pod.worker import PodWorker
from nodeagent.state import StateStore
from tests.helpers import eventually
from tests.unit.pod.fakes import FakeProcess, FakeProcesses, FakeRecorder, container, pod


@dataclass
class FakeClient:
    statuses: list[core_pb2.PodStatus] = field(default_factory=list)
    deleted: list[tuple[str, int, str]] = field(default_factory=list)
    alive_at_delete: list[bool] = field(default_factory=list)
    processes: FakeProcesses | None = None

    async def update_status(self, obj: core_pb2.Pod) -> core_pb2.Pod:
        self.statuses.append(obj.status)
        out = core_pb2.Pod()
        out.CopyFrom(obj)
        out.metadata.uid = "uid-1"
        return out

    async def delete(self, kind: object, name: str, namespace: str, *, grace_period_seconds: int, uid: str) -> None:
        self.deleted.append((name, grace_period_seconds, uid))
        if self.processes is not None:
            self.alive_at_delete.extend(p.running() for p in self.processes.processes)

    def phases(self) -> list[str]:
        return [s.phase for s in self.statuses]


def worker(tmp_path: Path, p: core_pb2.Pod, processes: FakeProcesses) -> tuple[PodWorker, FakeClient]:
    client = FakeClient(processes=processes)
    config = AgentConfig(servers=[], node_name="n1", node_ip="127.0.0.1", data_dir=tmp_path, cgroups=False)
    ctx = AgentContext(
        client=client,  # type: ignore[arg-type]
        config=config,
        state=StateStore(tmp_path),
        recorder=FakeRecorder(),
        ports=PortAllocator(),
        cgroups=None,
        processes=processes,
    )
    return PodWorker(ctx, p, None), client


def keep_running(processes: FakeProcesses) -> None:
    def on_start(proc: FakeProcess) -> None:
        processes.adoptable[proc.shim_pid] = proc

    processes.on_start = on_start


async def test_init_containers_run_in_order_before_the_main_ones(tmp_path: Path) -> None:
    p = pod(container("main"))
    p.spec.init_containers.extend([container("first"), container("second")])
    processes = FakeProcesses(exits=[0, 0, None])  # both init containers succeed; main keeps running
    keep_running(processes)
    w, client = worker(tmp_path, p, processes)
    task = asyncio.create_task(w.run())
    await eventually(lambda: "Running" in client.phases() and len(processes.started) == 3, timeout=5)
    order = [spec.log_path.split("/containers/")[1].split("/")[0] for spec in processes.started]
    assert order == ["first", "second", "main"]
    last = client.statuses[-1]
    assert [c.type for c in last.conditions if c.status == "True"] == [
        "PodScheduled",
        "Initialized",
        "ContainersReady",
        "Ready",
    ]
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def test_a_failed_init_container_fails_the_pod_and_main_never_starts(tmp_path: Path) -> None:
    p = pod(container("main"), restart_policy="Never")
    p.spec.init_containers.append(container("setup"))
    processes = FakeProcesses(exits=[1])
    w, client = worker(tmp_path, p, processes)
    task = asyncio.create_task(w.run())
    await eventually(lambda: "Failed" in client.phases(), timeout=5)
    assert len(processes.started) == 1 and client.statuses[-1].reason == "InitContainerFailed"
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def test_a_finished_pod_is_never_run_again(tmp_path: Path) -> None:
    p = pod(container("main"))
    p.status.phase = "Succeeded"
    processes = FakeProcesses()
    w, _ = worker(tmp_path, p, processes)
    task = asyncio.create_task(w.run())
    await asyncio.sleep(0.2)
    assert processes.started == [] and w.terminal
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def test_deletion_stops_every_container_then_deletes_with_the_uid(tmp_path: Path) -> None:
    p = pod(container("a"), container("b"))
    p.spec.termination_grace_period_seconds = 5
    processes = FakeProcesses()
    keep_running(processes)
    w, client = worker(tmp_path, p, processes)
    task = asyncio.create_task(w.run())
    await eventually(lambda: len(processes.started) == 2 and all(r.process for r in w.runners.values()), timeout=5)
    deleting = core_pb2.Pod()
    deleting.CopyFrom(p)
    deleting.metadata.deletion_timestamp.GetCurrentTime()
    w.update(deleting)
    async with asyncio.timeout(5):
        await task
    assert client.deleted == [("web", 0, "uid-1")]
    assert client.alive_at_delete == [False, False], "the Pod was deleted while its processes ran"
    assert all(proc.signals[:1] == [15] for proc in processes.processes)
    assert not w.sandbox.root.exists(), "the sandbox outlived the pod"


async def test_draining_reports_failed_and_keeps_the_pod(tmp_path: Path) -> None:
    p = pod(container("main"))
    processes = FakeProcesses()
    keep_running(processes)
    w, client = worker(tmp_path, p, processes)
    task = asyncio.create_task(w.run())
    await eventually(lambda: w.runners["main"].process is not None, timeout=5)
    w.drain()
    async with asyncio.timeout(5):
        await task
    assert client.deleted == [] and client.statuses[-1].phase == "Failed"
    assert client.statuses[-1].reason == "Terminated"
