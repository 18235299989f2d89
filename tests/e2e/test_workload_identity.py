"""Who workloads run as: an unprivileged user by default under a root agent, securityContext, refusing root."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from controlplane.api.errors import PreconditionError
from controlplane.api.objects import from_manifest
from controlplane.api.pb import core_pb2
from controlplane.client.client import ApiClient
from nodeagent.cgroups import CgroupDriver
from nodeagent.identity import RunAs
from nodeagent.runas import command_as
from tests.e2e.conftest import AgentProcess, StartAgent, container_log, pod_manifest, wait_pod
from tests.helpers import eventually_async

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="switching users needs a root agent")

ID = ["sh", "-c", "echo uid=$(id -u) gid=$(id -g)"]


def _done(pod: core_pb2.Pod) -> bool:
    return pod.status.phase in ("Succeeded", "Failed")


async def test_a_root_agent_runs_workloads_as_the_unprivileged_user_unless_the_pod_says(
    client: ApiClient, start_agent: StartAgent, namespace: str
) -> None:
    agent = await start_agent("--run-as-user", "65534", "--run-as-group", "65534")
    await client.create(pod_manifest("default-user", namespace, agent.node, ID, restartPolicy="Never"))
    await client.create(
        pod_manifest(
            "chosen-user",
            namespace,
            agent.node,
            ID,
            restartPolicy="Never",
            securityContext={"runAsUser": 4321, "runAsGroup": 4322},
        )
    )
    await client.create(
        pod_manifest(
            "container-wins",
            namespace,
            agent.node,
            ID,
            restartPolicy="Never",
            securityContext={"runAsUser": 4321},
            container={"securityContext": {"runAsUser": 5432, "runAsGroup": 5433}},
        )
    )
    for name, expected in (
        ("default-user", "uid=65534 gid=65534"),
        ("chosen-user", "uid=4321 gid=4322"),
        ("container-wins", "uid=5432 gid=5433"),
    ):
        pod = await wait_pod(client, namespace, name, _done)
        assert pod.status.phase == "Succeeded", pod.status
        assert expected in container_log(agent, pod), name


async def test_an_agent_refusing_root_fails_a_root_pod_with_a_clear_reason(
    client: ApiClient, start_agent: StartAgent, namespace: str
) -> None:
    agent = await start_agent("--run-as-user", "65534", "--refuse-root-workloads")
    await client.create(
        pod_manifest("as-root", namespace, agent.node, ID, restartPolicy="Never", securityContext={"runAsUser": 0})
    )
    await client.create(
        pod_manifest(
            "non-root-asked",
            namespace,
            agent.node,
            ID,
            restartPolicy="Never",
            securityContext={"runAsUser": 0, "runAsNonRoot": True},
        )
    )
    pod = await wait_pod(
        client,
        namespace,
        "as-root",
        lambda p: p.status.container_statuses[0].state.waiting.reason == "CreateContainerConfigError",
    )
    assert "refuses root workloads" in pod.status.container_statuses[0].state.waiting.message
    pod = await wait_pod(
        client,
        namespace,
        "non-root-asked",
        lambda p: p.status.container_statuses[0].state.waiting.reason == "CreateContainerConfigError",
    )
    assert "runAsNonRoot" in pod.status.container_statuses[0].state.waiting.message


async def test_exec_runs_as_the_container_not_as_the_root_agent(
    client: ApiClient, start_agent: StartAgent, namespace: str
) -> None:
    agent = await start_agent("--run-as-user", "65534", "--run-as-group", "65534")
    await client.create(
        pod_manifest("sleeper", namespace, agent.node, ["sleep", "600"], securityContext={"runAsUser": 4321})
    )
    await wait_pod(client, namespace, "sleeper", lambda p: p.status.phase == "Running")
    out: list[bytes] = []

    async def ran() -> bool:
        try:
            out[:] = [frame.stdout async for frame in client.pod_exec("sleeper", ["id", "-u"], namespace)]
        except PreconditionError:  # the agent may not have seen the start yet
            return False
        return True

    await eventually_async(ran, timeout=10)
    assert b"".join(out).strip() == b"4321"
    frames = [f async for f in client.pod_exec("sleeper", ["no-such-command"], namespace)]
    assert frames[-1].exit_code == 127
    assert b"no-such-command" in b"".join(f.stderr for f in frames)


async def test_exec_probes_and_pre_stop_hooks_run_as_the_container(
    client: ApiClient, start_agent: StartAgent, namespace: str, request: pytest.FixtureRequest
) -> None:
    """docs/security.md: every process the agent starts for a pod runs as the pod's user — its readiness and
    liveness exec probes and its preStop exec hook report uid 4321 like the main process, and receive the
    container's environment, inside the container's cgroup (plausible bugs, the issue's findings: probes and
    hooks ran as the root agent, in the agent's cgroup)."""
    agent = await start_agent("--run-as-user", "65534", "--run-as-group", "65534")
    # Outside pytest's 0700 tmp_path, so that uid 4321 can reach it.
    out = Path(tempfile.mkdtemp(prefix="navarch-seen-"))
    out.chmod(0o1777)
    request.addfinalizer(lambda: shutil.rmtree(out, ignore_errors=True))
    # uid, environment, and how many hierarchies put it in the container's own cgroup (".../main.<n>").
    record = f'echo "$(id -u) $MARK $(grep -c "/main\\.[0-9]*$" /proc/self/cgroup)" >> {out}/$0'
    probe = {"exec": {"command": ["sh", "-c", record, "readiness"]}, "periodSeconds": 1}
    pod = pod_manifest(
        "hooked",
        namespace,
        agent.node,
        ["sh", "-c", f"{record}; exec sleep 300", "main"],
        securityContext={"runAsUser": 4321, "runAsGroup": 4321},
        terminationGracePeriodSeconds=5,
        container={
            "env": [{"name": "MARK", "value": "from-the-pod"}],
            "readinessProbe": probe,
            "livenessProbe": {**probe, "exec": {"command": ["sh", "-c", record, "liveness"]}},
            "lifecycle": {"preStop": {"exec": {"command": ["sh", "-c", record, "prestop"]}}},
        },
    )
    await client.create(pod)

    async def probed() -> bool:
        return all((out / n).exists() for n in ("main", "readiness", "liveness"))

    await eventually_async(probed, timeout=30)
    await client.delete(core_pb2.Pod, "hooked", namespace)

    async def stopped() -> bool:
        return (out / "prestop").exists()

    await eventually_async(stopped, timeout=30)
    main = set((out / "main").read_text().split("\n")) - {""}
    assert len(main) == 1 and next(iter(main)).startswith("4321 from-the-pod "), main
    if CgroupDriver.detect("probe-check") is not None:
        assert not next(iter(main)).endswith(" 0"), "the main process is in no container cgroup: nothing tested"
    for name in ("readiness", "liveness", "prestop"):
        lines = set((out / name).read_text().split("\n")) - {""}
        assert lines == main, f"{name}: {lines}, the main process: {main}"


READ_ALL = """
import os, sys
root, marker = sys.argv[1], sys.argv[2].encode()
for dirpath, dirs, files in os.walk(root):
    for name in files:
        path = os.path.join(dirpath, name)
        try:
            with open(path, "rb") as f:
                if marker in f.read():
                    print(path)
        except OSError:
            pass
"""


async def test_no_secret_value_is_readable_by_another_user_on_the_node(
    client: ApiClient, start_agent: StartAgent, namespace: str
) -> None:
    """docs/security.md: a Secret used in a pod's environment and as a volume is on the node only where the
    pod's user and the agent can read it — every file under the agent's data directory is read as a third
    uid (nobody) and none holds the value, and as root it is found only in the secret volume (plausible bugs,
    the issue's findings: the container's spec.json, with its resolved environment, was 0644 in 0755
    directories; Secret values were written to disk outside secret volumes)."""
    agent = await start_agent()
    agent.data_dir.chmod(0o755)  # the test's own tmp dir is 0700: open it, so only the agent's modes decide
    for parent in agent.data_dir.parents:
        if parent == Path("/tmp"):
            break
        parent.chmod(parent.stat().st_mode | 0o005)
    secret = "s3cr3t-" + os.urandom(6).hex()
    await client.create(
        from_manifest(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": "db", "namespace": namespace},
                "stringData": {"password": secret},
            }
        )
    )
    pod = pod_manifest(
        "uses-secret",
        namespace,
        agent.node,
        ["sh", "-c", 'echo started; test "$PASSWORD" = "$(cat "$NAVARCH_VOLUME_CREDS/password")" && exec sleep 300'],
        securityContext={"runAsUser": 4321, "runAsGroup": 4321},
        volumes=[{"name": "creds", "secret": {"secretName": "db"}}],
        container={
            "env": [{"name": "PASSWORD", "valueFrom": {"secretKeyRef": {"name": "db", "key": "password"}}}],
            "volumeMounts": [{"name": "creds", "mountPath": "/creds"}],
        },
    )
    await client.create(pod)
    await wait_pod(client, namespace, "uses-secret", lambda p: p.status.phase == "Running", timeout=30)
    await eventually_async(lambda: _logged(agent, client, namespace), timeout=15)
    # The system's python: the test's interpreter may live where uid 65534 cannot read (a root pyenv).
    python = shutil.which("python3", path="/usr/bin:/bin") or sys.executable
    # Through the agent's own privilege-dropping helper: subprocess's user= would fork this process, whose
    # gRPC threads can crash the child before it execs.
    launch = command_as(RunAs(65534, 65534), [python, "-I", "-c", READ_ALL, str(agent.data_dir), secret], {})
    try:
        readable = await asyncio.to_thread(
            subprocess.run,
            launch.argv,
            env=launch.env,
            pass_fds=launch.pass_fds,
            cwd="/",
            capture_output=True,
            text=True,
            check=True,
        )
    finally:
        launch.close()
    assert readable.stdout == "", f"readable by uid 65534: {readable.stdout}"
    as_root = await asyncio.to_thread(
        subprocess.run,
        [python, "-I", "-c", READ_ALL, str(agent.data_dir), secret],
        env={"PATH": "/usr/bin:/bin"},
        cwd="/",
        capture_output=True,
        text=True,
        check=True,
    )
    found = as_root.stdout.split()
    assert found, "the test found the secret nowhere, even as root: it tested nothing"
    # On disk only in the secret volume (the shim gets its environment in memory, never through a file).
    assert all("/volumes/creds/" in path for path in found), f"the value is on disk outside its volume: {found}"


async def _logged(agent: AgentProcess, client: ApiClient, namespace: str) -> bool:
    pod = await client.get(core_pb2.Pod, "uses-secret", namespace)
    return "started" in container_log(agent, pod) and pod.status.phase == "Running"
