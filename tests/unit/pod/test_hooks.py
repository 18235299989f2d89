"""Each container hook on its own, with a fake instance (no processes, no cluster): what it puts on the
instance, what it skips for an adopted one, and what it reports.

Plausible bugs: a containerPort 0 given a new port on every restart, or $(VAR) not expanded (environment);
the pod's directories re-owned under a running, adopted workload (identity); the rlimit fallback not
applied or the enforcement reported wrongly (limits); an adopted instance's logs pruned (logs); readiness
reported before the probe succeeded, or a liveness failure not asking for a restart (probes); a failing
preStop not reported (lifecycle)."""

from __future__ import annotations

import asyncio
import os
import socket
from pathlib import Path

from controlplane.api.pb import core_pb2
from nodeagent.config import AgentConfig
from nodeagent.identity import RunAs
from nodeagent.pod.context import AgentContext, PortAllocator, PortsExhaustedError
from nodeagent.pod.hooks import Instance
from nodeagent.pod.hooks.environment import EnvironmentHook
from nodeagent.pod.hooks.identity import IdentityHook
from nodeagent.pod.hooks.lifecycle import LifecycleHook
from nodeagent.pod.hooks.limits import LimitsHook
from nodeagent.pod.hooks.logs import LogsHook
from nodeagent.pod.hooks.probes import ProbesHook
from nodeagent.sandbox import Sandbox
from nodeagent.state import StateStore
from tests.helpers import eventually
from tests.unit.pod.fakes import FakeProcesses, FakeRecorder, container, pod


class Events:
    def __init__(self) -> None:
        self.probes: list[tuple[str, bool]] = []
        self.restarts = 0
        self.events: list[str] = []

    def probe_changed(self, kind: str, ok: bool) -> None:
        self.probes.append((kind, ok))

    def restart(self) -> None:
        self.restarts += 1

    def reload(self) -> None:
        self.restarts += 1

    def event(self, type_: str, reason: str, message: str) -> None:
        self.events.append(reason)


def config(tmp_path: Path, **kw: object) -> AgentConfig:
    return AgentConfig(servers=[], node_name="n1", node_ip="127.0.0.1", data_dir=tmp_path, **kw)  # type: ignore[arg-type]


def instance(tmp_path: Path, c: core_pb2.Container, *, restart_count: int = 0, adopted: bool = False) -> Instance:
    state_dir = tmp_path / "containers" / c.name
    state_dir.mkdir(parents=True, exist_ok=True)
    return Instance(pod(c), c, False, restart_count, state_dir, events=Events(), adopted=adopted)


def context(tmp_path: Path) -> AgentContext:
    return AgentContext(
        client=None,  # type: ignore[arg-type]  # literal env only: the hook never asks the API
        config=config(tmp_path),
        state=StateStore(tmp_path),
        recorder=FakeRecorder(),
        ports=PortAllocator(),
        cgroups=None,
        processes=FakeProcesses(),
    )


async def test_environment_expands_names_ports_and_keeps_a_chosen_port(tmp_path: Path) -> None:
    c = container(command=["serve", "--port=$(PORT_HTTP)", "--name=$(GREETING)"])
    c.env.add(name="GREETING", value="hi")
    c.ports.add(name="http", container_port=0)
    c.ports.add(name="admin", container_port=9000)
    sandbox = Sandbox(tmp_path / "pod")
    sandbox.create()
    record_ports: dict[str, int] = {}
    ctx = context(tmp_path)
    hook = EnvironmentHook(ctx, sandbox, lambda: {}, record_ports)
    first = instance(tmp_path, c)
    await hook.prestart(first)
    port = int(first.env["PORT_HTTP"])
    assert 20000 <= port <= 29999 and first.env["PORT_ADMIN"] == "9000" and first.env["GREETING"] == "hi"
    assert first.argv == ["serve", f"--port={port}", "--name=hi"]
    assert first.ports == {"http": port, "admin": 9000} and first.allocated == {"http": port}
    assert first.env["NAVARCH_SANDBOX"] == str(sandbox.root) and first.cwd == str(sandbox.work)
    assert record_ports == {"main/http": port}, "the allocation is in the pod's record (saved with it)"
    again = instance(tmp_path, c, restart_count=1)
    await hook.prestart(again)
    assert again.env["PORT_HTTP"] == str(port), "a restarted instance keeps the pod's port"
    # A new agent (restart) with the record's ports: the same port, and no one else gets it.
    restarted = EnvironmentHook(context(tmp_path), sandbox, lambda: {}, dict(record_ports))
    adopted = instance(tmp_path, c, adopted=True)
    await restarted.prestart(adopted)
    assert adopted.env["PORT_HTTP"] == str(port)


def test_the_port_allocator_never_hands_a_port_out_twice_skips_busy_ones_and_says_when_it_is_full() -> None:
    ports = PortAllocator(24100, 24109)
    with socket.socket() as busy:
        busy.bind(("", 24105))
        busy.listen()
        ports.reserve(24100)  # a live pod's, from its record
        got = {ports.allocate() for _ in range(8)}
        assert got == set(range(24100, 24110)) - {24100, 24105}
        try:
            ports.allocate()
            raise AssertionError("a full range must refuse")
        except PortsExhaustedError as err:
            assert "24100-24109" in str(err)
        ports.release([24101, 24102])  # their pod is gone: they can be handed out again
        assert {ports.allocate(), ports.allocate()} == {24101, 24102}


async def test_identity_resolves_the_user_and_leaves_an_adopted_workloads_files_alone(tmp_path: Path) -> None:
    sandbox = Sandbox(tmp_path / "pod")
    sandbox.create()
    hook = IdentityHook(config(tmp_path, run_as_user=4321, run_as_group=4321), sandbox)
    adopted = instance(tmp_path, container(), adopted=True)
    await hook.prestart(adopted)
    expected = RunAs(4321, 4321) if os.geteuid() == 0 else RunAs(None, None)
    assert adopted.run_as.uid == expected.uid
    assert sandbox.work.stat().st_uid == os.geteuid(), "an adopted instance's directories were re-owned"
    fresh = instance(tmp_path, container())
    await hook.prestart(fresh)
    if os.geteuid() == 0:
        assert sandbox.work.stat().st_uid == 4321


async def test_limits_fall_back_to_an_rlimit_without_cgroups(tmp_path: Path) -> None:
    c = container()
    c.resources.limits["memory"] = "64Mi"
    hook = LimitsHook(None, "uid-1")
    inst = instance(tmp_path, c)
    await hook.prestart(inst)
    assert inst.rlimit_as == 2 * 64 * 2**20 and inst.cgroup_procs == []
    assert hook.enforcement(pod(c)) == "rlimit"
    assert hook.enforcement(pod(container())) == "none"
    adopted = instance(tmp_path, c, adopted=True)
    await hook.prestart(adopted)
    assert adopted.rlimit_as == 0, "an adopted process already has its limits"


async def test_logs_name_the_instance_file_and_prune_only_for_a_new_instance(tmp_path: Path) -> None:
    hook = LogsHook(config(tmp_path, log_max_bytes=4096, log_keep=2))
    inst = instance(tmp_path, container(), restart_count=3)
    for n in (0, 1, 2, 3):
        (inst.state_dir / f"{n}.log").write_text("x")
    adopted = instance(tmp_path, container(), restart_count=3, adopted=True)
    await hook.prestart(adopted)
    assert sorted(p.name for p in inst.state_dir.glob("*.log")) == ["0.log", "1.log", "2.log", "3.log"]
    await hook.prestart(inst)
    assert inst.log_path == str(inst.state_dir / "3.log") and (inst.log_max_bytes, inst.log_keep) == (4096, 2)
    assert sorted(p.name for p in inst.state_dir.glob("*.log")) == ["2.log", "3.log"]


def _listener() -> socket.socket:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen()
    return s


async def test_readiness_follows_a_tcp_probe_and_liveness_asks_for_a_restart(tmp_path: Path) -> None:
    server = _listener()
    port = server.getsockname()[1]
    c = container()
    c.readiness_probe.tcp_socket.port.number_value = port
    c.readiness_probe.period_seconds = 1
    c.readiness_probe.failure_threshold = 1
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    c.liveness_probe.tcp_socket.port.number_value = closed.getsockname()[1]  # nothing listens: fails
    c.liveness_probe.period_seconds = 1
    c.liveness_probe.failure_threshold = 1
    hook = ProbesHook("127.0.0.1")
    inst = instance(tmp_path, c)
    events = inst.events
    assert isinstance(events, Events)
    await hook.poststart(inst)
    assert events.probes[:2] == [("startup", True), ("readiness", False)], "ready before any probe"
    async with asyncio.timeout(10):
        await eventually(lambda: ("readiness", True) in events.probes, timeout=10)
        await eventually(lambda: events.restarts >= 1, timeout=10)
    assert "Unhealthy" in events.events
    server.close()
    await eventually(lambda: events.probes[-1] == ("readiness", False), timeout=10)
    await hook.stop(inst)
    closed.close()


async def test_init_containers_get_no_probes(tmp_path: Path) -> None:
    c = container()
    c.readiness_probe.exec.command.append("false")
    hook = ProbesHook("127.0.0.1")
    inst = instance(tmp_path, c)
    inst.init = True
    await hook.poststart(inst)
    assert isinstance(inst.events, Events) and inst.events.probes == []
    await hook.stop(inst)


async def test_a_failing_pre_stop_is_reported(tmp_path: Path) -> None:
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    c = container()
    c.lifecycle.pre_stop.tcp_socket.port.number_value = closed.getsockname()[1]
    inst = instance(tmp_path, c)
    await LifecycleHook("127.0.0.1").prekill(inst, asyncio.get_running_loop().time() + 2)
    assert isinstance(inst.events, Events) and inst.events.events == ["FailedPreStopHook"]
    closed.close()
