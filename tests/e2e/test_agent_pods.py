"""Real agents running real processes: logs, restart policies, back-off, probes, termination, volumes."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import random
import socket
import subprocess
import sys
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from controlplane.api.pb import core_pb2
from controlplane.client.client import ApiClient
from nodeagent.cgroups import CgroupDriver
from nodeagent.supervisor import process_start_time
from tests.e2e.conftest import AgentProcess, StartAgent, container_log, eventually_async, pod_manifest, wait_pod


def _running(p: core_pb2.Pod) -> bool:
    return p.status.phase == "Running" and all(s.state.HasField("running") for s in p.status.container_statuses)


def _cond(p: core_pb2.Pod, kind: str) -> str:
    return next((c.status for c in p.status.conditions if c.type == kind), "")


def _log(agent: AgentProcess, pod: core_pb2.Pod, container: str = "main") -> str:
    return container_log(agent, pod, container)


async def test_a_pod_runs_with_its_environment_and_logs(client: ApiClient, agent: AgentProcess, namespace: str) -> None:
    pod = pod_manifest(
        "hello",
        namespace,
        agent.node,
        ["sh", "-c", "echo hello from $(POD_NAME) in $MY_NS; pwd; sleep 300"],
        container={
            "env": [
                {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                {"name": "MY_NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
            ]
        },
    )
    created = await client.create(pod)
    running = await wait_pod(client, namespace, "hello", lambda p: _running(p) and _cond(p, "Ready") == "True")
    assert running.status.host_ip == "127.0.0.1" and running.status.pod_ip == "127.0.0.1"
    assert running.status.start_time.seconds > 0
    assert {c.type for c in running.status.conditions} == {"PodScheduled", "Initialized", "ContainersReady", "Ready"}
    await eventually_async(lambda: _async_bool(f"hello from hello in {namespace}" in _log(agent, created)))
    lines = _log(agent, created).splitlines()
    stamp, stream, tag, _ = lines[0].split(" ", 3)
    assert stream == "stdout" and tag == "F" and datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    assert lines[1].endswith(f"pods/{created.metadata.uid}/work")  # the default working directory


async def _async_bool(value: bool) -> bool:
    return value


async def test_restart_policies_give_the_right_exit_codes_and_counts(
    client: ApiClient, agent: AgentProcess, namespace: str
) -> None:
    await client.create(pod_manifest("never", namespace, agent.node, ["sh", "-c", "exit 3"], restartPolicy="Never"))
    await client.create(pod_manifest("onfailure-ok", namespace, agent.node, ["true"], restartPolicy="OnFailure"))
    await client.create(
        pod_manifest("onfailure-bad", namespace, agent.node, ["sh", "-c", "exit 1"], restartPolicy="OnFailure")
    )
    await client.create(pod_manifest("always", namespace, agent.node, ["true"], restartPolicy="Always"))
    never = await wait_pod(client, namespace, "never", lambda p: p.status.phase == "Failed")
    st = never.status.container_statuses[0]
    assert st.state.terminated.exit_code == 3 and st.restart_count == 0 and st.state.terminated.reason == "Error"
    ok = await wait_pod(client, namespace, "onfailure-ok", lambda p: p.status.phase == "Succeeded")
    assert ok.status.container_statuses[0].state.terminated.reason == "Completed"
    assert ok.status.container_statuses[0].restart_count == 0
    bad = await wait_pod(
        client, namespace, "onfailure-bad", lambda p: p.status.container_statuses[0].restart_count >= 2
    )
    assert bad.status.container_statuses[0].last_state.terminated.exit_code == 1
    always = await wait_pod(client, namespace, "always", lambda p: p.status.container_statuses[0].restart_count >= 2)
    assert always.status.phase == "Running" and always.status.container_statuses[0].last_state.terminated.exit_code == 0


async def test_crash_loop_back_off_doubles_between_restarts(
    client: ApiClient, agent: AgentProcess, namespace: str
) -> None:
    created = await client.create(
        pod_manifest(
            "crash",
            namespace,
            agent.node,
            ["sh", "-c", 'date +%s.%N >> "$NAVARCH_VOLUME_RUNS/starts"; exit 1'],
            container={"volumeMounts": [{"name": "runs", "mountPath": "/runs"}]},
            volumes=[{"name": "runs", "emptyDir": {}}],
        )
    )
    pod = await wait_pod(
        client, namespace, "crash", lambda p: p.status.container_statuses[0].restart_count >= 4, timeout=40
    )
    assert pod.status.container_statuses[0].state.waiting.reason in ("CrashLoopBackOff", "")
    # The start times each run recorded show the schedule: 0.5 s, 1 s, 2 s, 4 s (capped).
    runs = agent.data_dir / "pods" / created.metadata.uid / "volumes" / "runs" / "starts"
    starts = [float(line) for line in runs.read_text().split()]
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    assert len(gaps) >= 4
    for gap, expected in zip(gaps, [0.5, 1, 2, 4], strict=False):
        assert expected * 0.9 <= gap <= expected + 3.0, f"gaps {gaps}"


async def test_liveness_failure_restarts_and_readiness_drives_ready(
    client: ApiClient, agent: AgentProcess, namespace: str
) -> None:
    flag = f"/tmp/navarch-ready-{uuid.uuid4().hex}"
    probe = {"periodSeconds": 1, "failureThreshold": 1}
    await client.create(
        pod_manifest(
            "probed",
            namespace,
            agent.node,
            ["sleep", "300"],
            container={
                "readinessProbe": {"exec": {"command": ["test", "-f", flag]}, **probe},
                "livenessProbe": {"exec": {"command": ["test", "!", "-f", flag + ".dead"]}, **probe},
            },
            terminationGracePeriodSeconds=1,
        )
    )
    pod = await wait_pod(client, namespace, "probed", _running)
    assert _cond(pod, "Ready") == "False"
    Path(flag).touch()
    await wait_pod(client, namespace, "probed", lambda p: _cond(p, "Ready") == "True")
    os.unlink(flag)
    await wait_pod(client, namespace, "probed", lambda p: _cond(p, "Ready") == "False")
    Path(flag + ".dead").touch()
    try:
        restarted = await wait_pod(
            client, namespace, "probed", lambda p: p.status.container_statuses[0].restart_count >= 1
        )
        assert restarted.status.container_statuses[0].last_state.terminated.signal in (15, 9)
    finally:
        os.unlink(flag + ".dead")


async def test_graceful_deletion_sends_sigterm_then_sigkill(
    client: ApiClient, agent: AgentProcess, namespace: str, tmp_path: Path
) -> None:
    marker = tmp_path / "got-term"
    prestop = tmp_path / "pre-stop"
    polite = f"trap 'echo term > {marker}; exit 0' TERM; echo trapped; while true; do sleep 0.1; done"
    hook = {"preStop": {"exec": {"command": ["sh", "-c", f"echo prestop > {prestop}"]}}}
    created = await client.create(
        pod_manifest("polite", namespace, agent.node, ["sh", "-c", polite], container={"lifecycle": hook})
    )
    await client.create(
        pod_manifest(
            "stubborn",
            namespace,
            agent.node,
            ["sh", "-c", "trap '' TERM; while true; do sleep 0.1; done"],
            terminationGracePeriodSeconds=1,
        )
    )
    await wait_pod(client, namespace, "polite", _running)
    await wait_pod(client, namespace, "stubborn", _running)
    # Running means the process started; the shell must also have installed its trap before the signal.
    await eventually_async(lambda: _async_bool("trapped" in _log(agent, created)))
    _, gone = await client.delete(core_pb2.Pod, "polite", namespace, grace_period_seconds=30)
    assert not gone  # the agent finishes the deletion
    await eventually_async(lambda: _gone(client, namespace, "polite"), timeout=20)
    assert marker.read_text().strip() == "term"
    await client.delete(core_pb2.Pod, "stubborn", namespace)  # its own grace period: 1 s, then SIGKILL
    await eventually_async(lambda: _gone(client, namespace, "stubborn"), timeout=20)
    assert prestop.read_text().strip() == "prestop"  # the polite pod's preStop hook ran first


async def test_grace_zero_kills_at_once(client: ApiClient, agent: AgentProcess, namespace: str) -> None:
    created = await client.create(
        pod_manifest(
            "doomed",
            namespace,
            agent.node,
            ["sh", "-c", "trap '' TERM; echo ignoring; while true; do sleep 0.1; done"],
            terminationGracePeriodSeconds=300,
        )
    )
    await wait_pod(client, namespace, "doomed", _running)
    started = agent.data_dir / "pods" / created.metadata.uid / "containers" / "main" / "started.json"
    pid = json.loads(started.read_text())["pid"]
    start = process_start_time(pid)
    _, gone = await client.delete(core_pb2.Pod, "doomed", namespace, grace_period_seconds=0)
    assert gone  # removed from the API at once
    # Killed without waiting for the 300 s grace period the pod asked for.
    await eventually_async(lambda: _async_bool(process_start_time(pid) != start), timeout=20)


async def _gone(client: ApiClient, namespace: str, name: str) -> bool:
    listed = await client.list(core_pb2.Pod, namespace, field_selector=f"metadata.name={name}")
    return not listed.items


async def test_an_empty_dir_survives_a_restart_and_goes_with_the_pod(
    client: ApiClient, agent: AgentProcess, namespace: str
) -> None:
    script = 'echo run >> "$NAVARCH_VOLUME_SCRATCH/runs"; cat ./data/runs; exit 1'
    created = await client.create(
        pod_manifest(
            "scratch",
            namespace,
            agent.node,
            ["sh", "-c", script],
            container={"volumeMounts": [{"name": "scratch", "mountPath": "/data"}]},
            volumes=[{"name": "scratch", "emptyDir": {}}],
        )
    )
    await wait_pod(client, namespace, "scratch", lambda p: p.status.container_statuses[0].restart_count >= 2)
    volume = agent.data_dir / "pods" / created.metadata.uid / "volumes" / "scratch"
    assert (volume / "runs").read_text().count("run") >= 3
    await client.delete(core_pb2.Pod, "scratch", namespace, grace_period_seconds=1)
    await eventually_async(lambda: _gone(client, namespace, "scratch"), timeout=20)
    await eventually_async(lambda: _async_bool(not volume.exists()), timeout=10)


PYTHON = sys.executable
_HOG = "import time; hog = bytearray(300 * 1024 * 1024); print('allocated', flush=True); time.sleep(60)"


async def test_a_memory_limit_is_enforced_with_cgroups(client: ApiClient, agent: AgentProcess, namespace: str) -> None:
    if CgroupDriver.detect("probe") is None:
        pytest.skip("no writable cgroup hierarchy with a memory controller on this host")
    limits = {"resources": {"limits": {"memory": "64Mi", "cpu": "500m"}}}
    await client.create(
        pod_manifest("hog", namespace, agent.node, [PYTHON, "-c", _HOG], restartPolicy="Never", container=limits)
    )
    pod = await wait_pod(client, namespace, "hog", lambda p: p.status.phase == "Failed")
    assert pod.status.resource_enforcement.startswith("cgroup-v")
    term = pod.status.container_statuses[0].state.terminated
    assert term.reason == "OOMKilled" and term.exit_code == 137 and term.signal == 9
    assert "allocated" not in container_log(agent, pod)
    # A pod within its limit runs, in its own cgroup with the limit set.
    await client.create(pod_manifest("modest", namespace, agent.node, ["sleep", "300"], container=limits))
    modest = await wait_pod(client, namespace, "modest", _running)
    started = agent.data_dir / "pods" / modest.metadata.uid / "containers" / "main" / "started.json"
    pid = json.loads(started.read_text())["pid"]
    lines = Path(f"/proc/{pid}/cgroup").read_text().splitlines()
    memory_line = next(line for line in lines if ":memory:" in line or line.startswith("0::"))
    assert f"navarch/{agent.node}/{modest.metadata.uid}/main.0" in memory_line
    # Its shim (the workload's parent) is charged to the same groups, joined before it read any output, and
    # the OOM killer passes it over (it recorded the hog's OOM kill above); the workload has the agent's
    # own adjustment back, so it is what a limit kills.
    shim = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    assert Path(f"/proc/{shim}/cgroup").read_text() == Path(f"/proc/{pid}/cgroup").read_text()
    effective = next(
        line for line in Path(f"/proc/{shim}/status").read_text().splitlines() if line.startswith("CapEff")
    )
    may_lower = bool(int(effective.split()[1], 16) & (1 << 24))  # CAP_SYS_RESOURCE
    shim_adj = Path(f"/proc/{shim}/oom_score_adj").read_text().strip()
    # Without CAP_SYS_RESOURCE (some sandboxes drop it from root) no process may shield itself: then an OOM
    # kill may take the shim, and the agent records the end itself (OOMKilled all the same).
    assert shim_adj == "-1000" if may_lower else shim_adj != "-1000"
    assert agent.proc is not None
    agent_adj = Path(f"/proc/{agent.proc.pid}/oom_score_adj").read_text()
    assert Path(f"/proc/{pid}/oom_score_adj").read_text() == agent_adj


async def test_without_cgroups_memory_is_limited_by_rlimit(
    client: ApiClient, start_agent: StartAgent, namespace: str
) -> None:
    plain = await start_agent("--no-cgroups")
    limits = {"resources": {"limits": {"memory": "64Mi"}}}
    await client.create(
        pod_manifest("hog", namespace, plain.node, [PYTHON, "-c", _HOG], restartPolicy="Never", container=limits)
    )
    pod = await wait_pod(client, namespace, "hog", lambda p: p.status.phase == "Failed")
    assert pod.status.resource_enforcement == "rlimit"
    assert pod.status.container_statuses[0].state.terminated.exit_code == 1
    assert "MemoryError" in container_log(plain, pod)


async def test_init_containers_run_in_order_before_the_main_containers(
    client: ApiClient, agent: AgentProcess, namespace: str
) -> None:
    mount = {"volumeMounts": [{"name": "shared", "mountPath": "/shared"}]}

    def step(name: str, script: str) -> dict[str, object]:
        return {"name": name, "command": ["sh", "-c", script], **mount}

    created = await client.create(
        pod_manifest(
            "ordered",
            namespace,
            agent.node,
            ["sh", "-c", 'cat "$NAVARCH_VOLUME_SHARED/steps"; sleep 300'],
            container=mount,
            initContainers=[
                step("first", 'sleep 0.3; echo first >> "$NAVARCH_VOLUME_SHARED/steps"'),
                step("second", 'echo second >> "$NAVARCH_VOLUME_SHARED/steps"'),
            ],
            volumes=[{"name": "shared", "emptyDir": {}}],
        )
    )
    pod = await wait_pod(client, namespace, "ordered", _running)
    assert _cond(pod, "Initialized") == "True"
    assert [s.state.terminated.reason for s in pod.status.init_container_statuses] == ["Completed", "Completed"]
    await eventually_async(lambda: _async_bool(_log(agent, created) != ""))
    assert [line.split(" ", 3)[3] for line in _log(agent, created).splitlines()] == ["first", "second"]

    failing = await client.create(
        pod_manifest(
            "blocked",
            namespace,
            agent.node,
            ["sh", "-c", "echo should not run"],
            restartPolicy="Never",
            initContainers=[{"name": "check", "command": ["sh", "-c", "exit 4"]}],
        )
    )
    blocked = await wait_pod(client, namespace, "blocked", lambda p: p.status.phase == "Failed")
    assert blocked.status.reason == "InitContainerFailed"
    assert blocked.status.init_container_statuses[0].state.terminated.exit_code == 4
    assert _cond(blocked, "Initialized") == "False"
    assert _log(agent, failing) == ""  # the main container never ran


async def test_a_startup_probe_holds_liveness_off_until_it_succeeds(
    client: ApiClient, agent: AgentProcess, namespace: str
) -> None:
    """docs/agent.md: liveness and readiness wait for the startup probe (plausible bug: liveness runs at once
    and kills a slow starter in a restart loop)."""
    flag = f"/tmp/navarch-started-{uuid.uuid4().hex}"
    await client.create(
        pod_manifest(
            "slow-start",
            namespace,
            agent.node,
            ["sleep", "300"],
            container={
                "startupProbe": {"exec": {"command": ["test", "-f", flag]}, "periodSeconds": 1, "failureThreshold": 60},
                "livenessProbe": {"exec": {"command": ["false"]}, "periodSeconds": 1, "failureThreshold": 1},
            },
            terminationGracePeriodSeconds=1,
        )
    )
    try:
        await wait_pod(client, namespace, "slow-start", _running)
        for _ in range(8):  # liveness would have failed (and restarted it) within a second or two
            pod = await client.get(core_pb2.Pod, "slow-start", namespace)
            status = pod.status.container_statuses[0]
            assert status.restart_count == 0 and not status.started, "liveness ran before the startup probe passed"
            await asyncio.sleep(0.5)
        Path(flag).touch()
        restarted = await wait_pod(
            client, namespace, "slow-start", lambda p: p.status.container_statuses[0].restart_count >= 1, timeout=30
        )
        assert restarted.status.container_statuses[0].last_state.HasField("terminated")
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(flag)


async def test_initial_delay_seconds_delays_the_first_probe(
    client: ApiClient, agent: AgentProcess, namespace: str
) -> None:
    """readinessProbe.initialDelaySeconds: not Ready before the delay, although the probe always passes."""
    await client.create(
        pod_manifest(
            "delayed",
            namespace,
            agent.node,
            ["sleep", "300"],
            container={"readinessProbe": {"exec": {"command": ["true"]}, "initialDelaySeconds": 3, "periodSeconds": 1}},
        )
    )
    running = await wait_pod(client, namespace, "delayed", _running)
    assert _cond(running, "Ready") != "True"
    await wait_pod(client, namespace, "delayed", lambda p: _cond(p, "Ready") == "True", timeout=30)
    started = running.status.container_statuses[0].state.running.started_at.seconds
    # startedAt has whole seconds: Ready may come up to 1 s early by that rounding, never earlier.
    assert time.time() >= started + 3 - 1, f"Ready {time.time() - started:.1f}s after the start"


_SPIN = "while True: pass"


async def test_a_cpu_limit_is_enforced(client: ApiClient, agent: AgentProcess, namespace: str) -> None:
    """docs/agent.md: the CFS quota comes from the cpu limit. A busy loop limited to 250m gets about a
    quarter of a CPU, measured from the process's own CPU time (plausible bug: the quota written to the
    wrong group, or in the wrong unit, so the loop runs free)."""
    if CgroupDriver.detect("probe") is None:
        pytest.skip("no writable cgroup hierarchy on this host")
    limits = {"resources": {"limits": {"cpu": "250m", "memory": "64Mi"}}}
    created = await client.create(
        pod_manifest("spinner", namespace, agent.node, [PYTHON, "-c", _SPIN], container=limits)
    )
    pod = await wait_pod(client, namespace, "spinner", _running)
    if pod.status.resource_enforcement == "rlimit":
        pytest.skip("this host's cgroups have no cpu controller the agent can use")
    started = agent.data_dir / "pods" / created.metadata.uid / "containers" / "main" / "started.json"
    pid = json.loads(started.read_text())["pid"]
    ticks = os.sysconf("SC_CLK_TCK")

    def cpu_seconds() -> float:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / ticks

    before, began = cpu_seconds(), time.monotonic()
    await asyncio.sleep(4)
    used, wall = cpu_seconds() - before, time.monotonic() - began
    assert used <= 0.25 * wall * 1.5 + 0.2, f"{used:.2f}s of CPU in {wall:.1f}s with a 250m limit"
    assert used >= 0.25 * wall * 0.4, f"only {used:.2f}s of CPU in {wall:.1f}s: the loop did not run"


async def _reasons(client: ApiClient, namespace: str, name: str) -> set[str]:
    events = (await client.list(core_pb2.Event, namespace)).items
    return {e.reason for e in events if e.involved_object.name == name}


async def test_the_agent_reports_what_it_does_as_events(client: ApiClient, agent: AgentProcess, namespace: str) -> None:
    """docs/agent.md's Events: Started, Unhealthy and Killing for a liveness failure, BackOff for a crash loop,
    Failed for a configuration error (plausible bug: events recorded but never flushed to the API)."""
    await client.create(
        pod_manifest(
            "unhealthy",
            namespace,
            agent.node,
            ["sleep", "300"],
            container={"livenessProbe": {"exec": {"command": ["false"]}, "periodSeconds": 1, "failureThreshold": 1}},
            terminationGracePeriodSeconds=1,
        )
    )
    await client.create(pod_manifest("crasher", namespace, agent.node, ["false"]))
    missing = {"env": [{"name": "X", "valueFrom": {"configMapKeyRef": {"name": "absent", "key": "k"}}}]}
    await client.create(pod_manifest("misconfigured", namespace, agent.node, ["true"], container=missing))

    async def reported() -> bool:
        return (
            {"Started", "Unhealthy", "Killing"} <= await _reasons(client, namespace, "unhealthy")
            and "BackOff" in await _reasons(client, namespace, "crasher")
            and "Failed" in await _reasons(client, namespace, "misconfigured")
        )

    await eventually_async(reported, timeout=45)
    events = (await client.list(core_pb2.Event, namespace)).items
    failed = next(e for e in events if e.involved_object.name == "misconfigured" and e.reason == "Failed")
    assert "absent" in failed.message and failed.source.component, failed


# Records what reaches it in RECORD: "http <path>" for a GET, "tcp" for a bare connection; SIGTERM is recorded
# too, so the order (hook first, then the signal) can be read back.
_RECORDER = """
import os, select, signal, socket, sys
rec, port, mode = sys.argv[1], int(sys.argv[2]), sys.argv[3]
def note(text):
    with open(rec, "a") as f:
        f.write(text + "\\n")
# SIGTERM stays blocked and is polled: a handler could run between accept() returning and the note, and
# lose a connection that came before the signal. A hook's connection is queued in the kernel before the
# agent sends SIGTERM, so draining the queue once SIGTERM is pending sees it.
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(("127.0.0.1", port)); s.listen()
s.setblocking(False)
def drain():
    while True:
        try:
            c, _ = s.accept()
        except BlockingIOError:
            return
        c.setblocking(True)
        if mode == "http":
            c.settimeout(5)
            try:
                data = c.recv(4096).decode(errors="replace")
                note("http " + (data.split()[1] if len(data.split()) > 1 else "?"))
                c.sendall(b"HTTP/1.0 200 OK\\r\\nContent-Length: 0\\r\\n\\r\\n")
            except OSError:
                note("http ?")
        else:
            note("tcp")
        c.close()
while True:
    select.select([s], [], [], 0.05)
    drain()
    if signal.SIGTERM in signal.sigpending():
        drain()
        note("SIGTERM")
        os._exit(0)
"""


async def test_pre_stop_http_and_tcp_hooks_run_before_sigterm(
    client: ApiClient, agent: AgentProcess, namespace: str, tmp_path: Path
) -> None:
    """docs/agent.md: lifecycle.preStop httpGet and tcpSocket run within the grace period, before SIGTERM
    (plausible bug: only exec hooks implemented, http/tcp skipped silently)."""
    http_rec, tcp_rec = tmp_path / "http.rec", tmp_path / "tcp.rec"
    http_port, tcp_port = 18931, 18932
    containers = [
        {
            "name": "web",
            "command": [PYTHON, "-c", _RECORDER, str(http_rec), str(http_port), "http"],
            "lifecycle": {"preStop": {"httpGet": {"path": "/drain", "port": http_port, "host": "127.0.0.1"}}},
            "readinessProbe": {"tcpSocket": {"port": http_port, "host": "127.0.0.1"}, "periodSeconds": 1},
        },
        {
            "name": "raw",
            "command": [PYTHON, "-c", _RECORDER, str(tcp_rec), str(tcp_port), "tcp"],
            # No probe here: a tcp probe's connections would look like the hook's.
            "lifecycle": {"preStop": {"tcpSocket": {"port": tcp_port, "host": "127.0.0.1"}}},
        },
    ]
    pod = pod_manifest("hooked", namespace, agent.node, ["true"], terminationGracePeriodSeconds=10)
    del pod.spec.containers[:]
    for c in containers:
        pod.spec.containers.append(from_manifest_container(c))
    await client.create(pod)
    await wait_pod(client, namespace, "hooked", lambda p: _cond(p, "Ready") == "True", timeout=30)

    async def raw_listening() -> bool:
        try:
            socket.create_connection(("127.0.0.1", tcp_port), timeout=1).close()
        except OSError:
            return False
        return True

    await eventually_async(raw_listening, timeout=15)
    await asyncio.sleep(0.3)
    http_rec.unlink(missing_ok=True)  # the probe's and our own connections are not what we look for
    tcp_rec.unlink(missing_ok=True)
    await client.delete(core_pb2.Pod, "hooked", namespace)
    await eventually_async(lambda: _gone(client, namespace, "hooked"), timeout=30)
    http_lines = http_rec.read_text().split("\n") if http_rec.exists() else []
    tcp_lines = tcp_rec.read_text().split("\n") if tcp_rec.exists() else []
    assert "http /drain" in http_lines and "SIGTERM" in http_lines, http_lines
    assert http_lines.index("http /drain") < http_lines.index("SIGTERM"), http_lines
    assert "tcp" in tcp_lines and "SIGTERM" in tcp_lines, tcp_lines
    assert tcp_lines.index("tcp") < tcp_lines.index("SIGTERM"), tcp_lines


def from_manifest_container(doc: dict[str, Any]) -> core_pb2.Container:
    from google.protobuf import json_format

    c = core_pb2.Container()
    json_format.ParseDict(doc, c)
    return c


def _no_process(marker: str) -> bool:
    out = subprocess.run(["pgrep", "-f", marker], capture_output=True, text=True, check=False)
    return out.stdout.strip() == ""


@pytest.mark.parametrize("cgroups", [True, False], ids=["cgroups", "no-cgroups"])
async def test_a_daemonising_workload_leaves_nothing_after_its_pod_is_deleted(
    client: ApiClient, start_agent: StartAgent, namespace: str, cgroups: bool
) -> None:
    """docs/agent.md: deleting a pod kills its whole workload, also processes that left its process group
    with setsid (plausible bug, the issue's finding: termination signalled the process group only, so a
    daemon survived its pod). With cgroups the container's group is emptied; without, the shim is a
    subreaper and kills what its main process left. Both failed on the previous agent."""
    agent = await start_agent(*([] if cgroups else ["--no-cgroups"]))
    mark = str(random.randint(100_000, 999_999))
    script = f'setsid sh -c "exec sleep 7{mark}" < /dev/null > /dev/null 2>&1 & exec sleep 8{mark}'
    await client.create(
        pod_manifest("daemon", namespace, agent.node, ["sh", "-c", script], terminationGracePeriodSeconds=2)
    )
    await wait_pod(client, namespace, "daemon", _running)

    async def both_running() -> bool:
        return not _no_process(f"sleep 7{mark}") and not _no_process(f"sleep 8{mark}")

    await eventually_async(both_running, timeout=15)
    await client.delete(core_pb2.Pod, "daemon", namespace)
    await eventually_async(lambda: _gone(client, namespace, "daemon"), timeout=30)
    for _ in range(6):  # and nothing comes back
        assert _no_process(f"sleep 7{mark}"), "the setsid daemon outlived its pod"
        assert _no_process(f"sleep 8{mark}")
        await asyncio.sleep(0.5)
