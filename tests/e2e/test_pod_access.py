"""Logs and exec from the CLI, through the API server's proxy, to real agents and real processes."""

from __future__ import annotations

import asyncio
import subprocess

import grpc

from controlplane.api.errors import ForbiddenError, InvalidError, NotFoundError, PreconditionError
from controlplane.api.objects import from_manifest
from controlplane.api.pb import core_pb2
from controlplane.client.client import ApiClient
from tests.cli.conftest import NAVARCH, Cli
from tests.e2e.conftest import AgentProcess, StartAgent, eventually_async, pod_manifest, wait_pod


def _running(p: core_pb2.Pod) -> bool:
    return p.status.phase == "Running" and all(s.state.HasField("running") for s in p.status.container_statuses)


async def test_logs_tail_and_timestamps(cli: Cli, client: ApiClient, agent: AgentProcess, namespace: str) -> None:
    script = "for i in 1 2 3 4 5; do echo line $i; done; echo oops >&2; sleep 300"
    await client.create(pod_manifest("talker", namespace, agent.node, ["sh", "-c", script]))
    await wait_pod(client, namespace, "talker", _running)

    async def has_all() -> bool:
        r = await cli("logs", "talker", "-n", namespace)
        return r.out.count("\n") == 6

    await eventually_async(has_all)
    whole = await cli("logs", "talker", "-n", namespace)
    lines = whole.out.splitlines()
    # stdout keeps its order; stderr is a separate pipe, so "oops" may be interleaved anywhere after start.
    assert [line for line in lines if line != "oops"] == ["line 1", "line 2", "line 3", "line 4", "line 5"]
    assert lines.count("oops") == 1
    tail = await cli("logs", "talker", "-n", namespace, "--tail", "2")
    assert tail.out.splitlines() == lines[-2:]
    stamped = await cli("logs", "talker", "-n", namespace, "--timestamps", "--tail", "1")
    stamp, text = stamped.out.strip().split(" ", 1)
    assert text == lines[-1] and stamp.endswith("Z") and "T" in stamp
    recent = await cli("logs", "talker", "-n", namespace, "--since", "1h")
    assert recent.out == whole.out
    bad = await cli("logs", "talker", "-n", namespace, "--since", "soon")
    assert bad.code != 0 and "not a duration" in bad.err


async def test_logs_follow_survives_rotation_and_ends_with_the_container(
    cli_env: dict[str, str], client: ApiClient, agent: AgentProcess, namespace: str
) -> None:
    # 300 lines of ~40 bytes through 4 KiB log files: the file rotates about three times while followed.
    script = 'i=0; while [ $i -lt 300 ]; do echo "line $i padding-padding-padding"; i=$((i+1)); sleep 0.01; done'
    await client.create(
        pod_manifest("writer", namespace, agent.node, ["sh", "-c", f"sleep 1; {script}"], restartPolicy="Never")
    )
    await wait_pod(client, namespace, "writer", _running)
    # No timeout on follow itself: it must end by itself when the container ends (the test's timeout guards).
    proc = await asyncio.to_thread(
        subprocess.run,
        [NAVARCH, "logs", "-f", "writer", "-n", namespace],
        capture_output=True,
        text=True,
        timeout=60,
        env=cli_env,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines == [f"line {i} padding-padding-padding" for i in range(300)]
    rotated = list((agent.data_dir / "pods").glob("*/containers/main/0.log.*"))
    assert rotated, "the log never rotated: the test did not test rotation"


async def test_logs_previous_and_selector(cli: Cli, client: ApiClient, agent: AgentProcess, namespace: str) -> None:
    # First run says "run 1" and fails; the second says "run 2" and stays up.
    script = 'n=$(cat "$NAVARCH_VOLUME_S/n" 2>/dev/null || echo 0); n=$((n+1)); echo $n > "$NAVARCH_VOLUME_S/n"; '
    script += 'echo "run $n"; [ $n -ge 2 ] && exec sleep 300; exit 1'
    for name in ("again-a", "again-b"):
        pod = pod_manifest(
            name,
            namespace,
            agent.node,
            ["sh", "-c", script],
            container={"volumeMounts": [{"name": "s", "mountPath": "/s"}]},
            volumes=[{"name": "s", "emptyDir": {}}],
        )
        pod.metadata.labels["app"] = "again"
        await client.create(pod)
    for name in ("again-a", "again-b"):
        await wait_pod(
            client, namespace, name, lambda p: _running(p) and p.status.container_statuses[0].restart_count == 1
        )
    current = await cli("logs", "again-a", "-n", namespace)
    previous = await cli("logs", "again-a", "-n", namespace, "--previous")
    assert current.out == "run 2\n" and previous.out == "run 1\n"
    merged = await cli("logs", "-l", "app=again", "-n", namespace)
    assert sorted(merged.out.splitlines()) == ["[pod/again-a] run 2", "[pod/again-b] run 2"]


async def test_exec_runs_in_the_container_environment(
    cli: Cli, client: ApiClient, agent: AgentProcess, namespace: str
) -> None:
    await client.create(
        pod_manifest(
            "box", namespace, agent.node, ["sleep", "300"], container={"env": [{"name": "GREETING", "value": "hi"}]}
        )
    )
    running = await wait_pod(client, namespace, "box", _running)
    r = await cli("exec", "box", "-n", namespace, "--", "sh", "-c", 'echo "$GREETING"; pwd; echo warn >&2; exit 7')
    assert r.code == 7
    out = r.out.splitlines()
    assert out[0] == "hi" and out[1].endswith(f"pods/{running.metadata.uid}/work")
    assert r.err == "warn\n"
    piped = await cli("exec", "-i", "box", "-n", namespace, "--", "tr", "a-z", "A-Z", stdin="hello\nworld\n")
    assert piped.code == 0 and piped.out == "HELLO\nWORLD\n"
    missing = await cli("exec", "box", "-n", namespace, "--", "no-such-command-xyz")
    assert missing.code == 127 and "no-such-command-xyz" in missing.err


async def test_pod_access_errors_name_what_is_wrong(
    client: ApiClient, agent: AgentProcess, namespace: str, cli: Cli
) -> None:
    await client.create(pod_manifest("done", namespace, agent.node, ["true"], restartPolicy="Never"))
    await wait_pod(client, namespace, "done", lambda p: p.status.phase == "Succeeded")
    unscheduled = pod_manifest("nowhere", namespace, "", ["true"])
    await client.create(unscheduled)
    try:
        async for _ in client.pod_logs("absent", namespace):
            pass
        raise AssertionError("logs of a missing pod succeeded")
    except NotFoundError as err:
        assert "absent" in err.message
    try:
        async for _ in client.pod_logs("nowhere", namespace):
            pass
        raise AssertionError("logs of an unscheduled pod succeeded")
    except PreconditionError as err:
        assert "not scheduled" in err.message
    try:
        async for _ in client.pod_logs("done", namespace, container="sidecar"):
            pass
        raise AssertionError("logs of a missing container succeeded")
    except InvalidError as err:
        assert "sidecar" in err.message and "main" in err.message
    try:
        async for _ in client.pod_exec("done", ["true"], namespace):
            pass
        raise AssertionError("exec in a finished container succeeded")
    except PreconditionError as err:
        assert "not running" in err.message
    r = await cli("logs", "done", "-n", namespace, "--previous")
    assert r.code != 0 and "previous terminated container" in r.err


async def test_an_agent_answers_only_the_api_server(client: ApiClient, start_agent: StartAgent, namespace: str) -> None:
    # This agent admits only 127.0.0.5: the API server, calling from 127.0.0.1, is refused.
    strict = await start_agent("--proxy-from", "127.0.0.5/32")
    await client.create(pod_manifest("guarded", namespace, strict.node, ["sleep", "300"]))
    await wait_pod(client, namespace, "guarded", _running)
    try:
        async for _ in client.pod_logs("guarded", namespace):
            pass
        raise AssertionError("the agent answered a caller it should refuse")
    except ForbiddenError as err:
        assert err.code == grpc.StatusCode.PERMISSION_DENIED and "only the API server" in err.message


async def test_a_log_over_the_message_cap_streams_whole_and_limit_bytes_cuts_it(
    cli: Cli, client: ApiClient, start_agent: StartAgent, namespace: str
) -> None:
    agent = await start_agent("--log-max-bytes", str(12 << 20), "--log-keep", "3")
    # 200,000 lines of 100 characters: 20 MB, more than one 16 MiB message (which the old reader sent it in).
    line = "0123456789" * 10
    script = f"yes {line} | head -n 200000; echo done; sleep 300"
    await client.create(pod_manifest("chatty", namespace, agent.node, ["sh", "-c", script]))
    await wait_pod(client, namespace, "chatty", _running)

    async def finished_writing() -> bool:
        tail = b"".join([c async for c in client.pod_logs("chatty", namespace, tail_lines=1)])
        return tail == b"done\n"

    await eventually_async(finished_writing, timeout=60)
    sizes: list[int] = []
    received = 0
    async for chunk in client.pod_logs("chatty", namespace):
        sizes.append(len(chunk))
        received += len(chunk)
    assert received == 200_000 * (len(line) + 1) + len("done\n")
    assert max(sizes) <= 1024 * 1024 + 16 * 1024  # chunks of about 1 MiB, never one huge message
    limited = b"".join([c async for c in client.pod_logs("chatty", namespace, limit_bytes=1000)])
    assert limited == ((line + "\n") * 10).encode()[:1000]
    followed = b"".join([c async for c in client.pod_logs("chatty", namespace, follow=True, limit_bytes=250)])
    assert len(followed) == 250  # a followed stream ends at the limit too
    short = await cli("logs", "chatty", "-n", namespace, "--limit-bytes", "15")
    assert short.out == line[:15]


async def test_logs_and_exec_take_an_owner_as_kubectl_does(
    cli: Cli, client: ApiClient, agent: AgentProcess, namespace: str
) -> None:
    """``navarch logs svc/pick`` / ``exec deploy/web`` (kubectl's habit) use one pod the object selects, a
    Running one first, and say which on stderr; ``pod/NAME`` is that pod; a kind that selects no pods is one
    clear line. They used to fail with 'Pod "ns/svc/pick" not found'."""
    running = pod_manifest("pick-a", namespace, agent.node, ["sh", "-c", "echo from a; exec sleep 300"])
    stuck = pod_manifest("pick-b", namespace, "no-such-node", ["sh", "-c", "echo from b"])  # bound, never started
    for pod in (running, stuck):
        pod.metadata.labels["app"] = "pick"
        await client.create(pod)
    await client.create(
        from_manifest(
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": "pick", "namespace": namespace},
                "spec": {"selector": {"app": "pick"}, "ports": [{"port": 80}]},
            }
        )
    )
    await client.create(
        from_manifest({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "plain", "namespace": namespace}})
    )
    await wait_pod(client, namespace, "pick-a", _running)

    async def logged() -> bool:
        return (await cli("logs", "svc/pick", "-n", namespace)).out == "from a\n"

    await eventually_async(logged, timeout=20)
    chosen = await cli("logs", "svc/pick", "-n", namespace)
    assert "Found 2 pods, using pod/pick-a" in chosen.err
    assert (await cli("logs", "pod/pick-a", "-n", namespace)).out == "from a\n"
    execd = await cli("exec", "service/pick", "-n", namespace, "--", "sh", "-c", "echo inside")
    assert execd.code == 0 and execd.out == "inside\n"
    plain = await cli("logs", "configmap/plain", "-n", namespace)
    assert plain.code != 0 and "has no pods to choose from" in plain.err
