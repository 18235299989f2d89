"""The fork server with real processes: a shim forked from it runs the workload with the environment it was
handed in memory (no spec file on disk), records its start and exit, and outlives the server (plausible
bugs: the environment written to a file again; shims dying with the fork server, so an agent restart would
restart every workload)."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import pytest

from nodeagent.forkserver import ForkServer
from nodeagent.shimspec import ShimSpec, Termination
from nodeagent.supervisor import ContainerProcess, alive, process_start_time, start
from tests.helpers import eventually

SECRET = "s3cr3t-" + os.urandom(4).hex()


def spec(state_dir: Path, argv: list[str]) -> ShimSpec:
    return ShimSpec(
        argv=argv,
        env={"SECRET": SECRET, "PATH": "/usr/bin:/bin"},
        cwd="/",
        state_dir=str(state_dir),
        log_path=str(state_dir / "0.log"),
    )


async def test_a_forked_shim_gets_its_environment_in_memory_and_records_its_exit(tmp_path: Path) -> None:
    server = ForkServer(tmp_path / "forkserver.log")
    try:
        state = tmp_path / "c1"
        proc = start(spec(state, ["sh", "-c", f'test "$SECRET" = "{SECRET}" && echo ok']), server)
        async with asyncio.timeout(10):
            term = await proc.wait()
        assert isinstance(term, Termination) and term.exit_code == 0, term
        assert "ok" in (state / "0.log").read_text()
        assert not (state / "spec.json").exists()
        for f in state.iterdir():
            assert SECRET not in f.read_text(errors="replace"), f"{f.name} holds the environment"
    finally:
        server.close()


async def test_a_shim_outlives_its_fork_server(tmp_path: Path) -> None:
    server = ForkServer(tmp_path / "forkserver.log")
    state = tmp_path / "c2"
    proc = start(spec(state, ["sleep", "300"]), server)
    await eventually(lambda: proc.started is not None, timeout=10)
    server_pid = server.pid()
    assert server_pid is not None
    start_time = process_start_time(server_pid)
    server.close()
    assert start_time is not None and not alive(server_pid, start_time), "the fork server did not stop"
    survivor = ContainerProcess(proc.shim_pid, proc.shim_start, state)
    assert survivor.running(), "the shim died with its fork server"
    survivor.signal_group(signal.SIGKILL)
    async with asyncio.timeout(10):
        term = await survivor.wait()
    assert term.signal == signal.SIGKILL or term.exit_code == 137


async def test_the_fork_server_serves_an_agent_with_more_than_1024_descriptors_open(tmp_path: Path) -> None:
    """An agent with hundreds of pods holds a pidfd per shim plus its connections: the socket it hands its
    fork server can be numbered above select()'s limit of 1024. The server used select() and died at start
    ("filedescriptor out of range"), so no container could start (found by a long test session)."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard < 1200:
        pytest.skip("cannot open more than 1024 descriptors here")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 1200), hard))
    held = [os.open(os.devnull, os.O_RDONLY) for _ in range(1100)]
    try:
        server = ForkServer(tmp_path / "forkserver.log")
        try:
            proc = start(spec(tmp_path / "c3", ["true"]), server)
            async with asyncio.timeout(10):
                term = await proc.wait()
            assert term.exit_code == 0, term
        finally:
            server.close()
    finally:
        for fd in held:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
