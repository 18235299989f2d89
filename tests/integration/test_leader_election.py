"""Leader election over a Lease: takeover after a crash, and a leader that cannot renew steps down first."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from controlplane.api.pb import coordination_pb2
from controlplane.apiserver.main import ApiServer
from controlplane.client.client import ApiClient, ClientConfig
from controlplane.client.leaderelection import LeaderElectionConfig, LeaderElector
from controlplane.launcher.etcd import EtcdCluster
from tests.conftest import api_config
from tests.helpers import eventually

LEASE, RENEW, RETRY = 3.0, 2.0, 0.5
CANDIDATE = Path(__file__).with_name("leader_candidate.py")


async def _read_line(proc: asyncio.subprocess.Process, prefix: str, timeout: float) -> str:
    assert proc.stdout is not None
    async with asyncio.timeout(timeout):
        while True:
            line = (await proc.stdout.readline()).decode()
            if not line:
                raise AssertionError(f"candidate exited before printing {prefix}")
            if line.startswith(prefix):
                return line.strip()


async def test_another_candidate_leads_within_lease_duration_after_the_leader_is_killed(
    apiserver: ApiServer,
) -> None:
    server = f"127.0.0.1:{apiserver.port}"
    lease_name = f"le-{uuid.uuid4().hex[:6]}"
    client = ApiClient(ClientConfig(endpoints=[server]))
    history: list[coordination_pb2.Lease] = []

    async def record() -> None:
        async for ev in client.watch(
            coordination_pb2.Lease, "navarch-system", field_selector=f"metadata.name={lease_name}"
        ):
            if ev.type in ("ADDED", "MODIFIED"):
                history.append(ev.object)

    recorder = asyncio.create_task(record())
    args = ["--server", server, "--lease", lease_name, "--durations", f"{LEASE},{RENEW},{RETRY}"]
    a = await asyncio.create_subprocess_exec(
        sys.executable, str(CANDIDATE), *args, "--identity", "a", stdout=subprocess.PIPE, cwd=Path(__file__).parents[2]
    )
    b = None
    try:
        await _read_line(a, "LEADING a", 15)
        b = await asyncio.create_subprocess_exec(
            sys.executable,
            str(CANDIDATE),
            *args,
            "--identity",
            "b",
            stdout=subprocess.PIPE,
            cwd=Path(__file__).parents[2],
        )
        await _read_line(b, "CANDIDATE b", 15)
        await asyncio.sleep(2 * RETRY)  # let b observe a's renewals (it must keep waiting)
        a.kill()
        killed = time.time()
        await a.wait()
        line = await _read_line(b, "LEADING b", LEASE + RETRY + 10)
        took_over = float(line.split()[2])
        assert took_over - killed <= LEASE + RETRY * 1.2 + 1.0, f"took {took_over - killed:.2f}s"
        await asyncio.sleep(RETRY * 2)
    finally:
        for proc in (a, b):
            if proc is not None and proc.returncode is None:
                proc.kill()
                await proc.wait()
        recorder.cancel()
        await asyncio.gather(recorder, return_exceptions=True)
        await client.close()
    holders = [lease.spec.holder_identity for lease in history]
    assert holders[0] == "a" and holders[-1] == "b" and "b" not in holders[: holders.index("b")]
    switch = holders.index("b")
    last_a, first_b = history[switch - 1], history[switch]
    gap = first_b.spec.acquire_time.ToNanoseconds() - last_a.spec.renew_time.ToNanoseconds()
    # Never two leaders: b acquired only after a's last renewal had aged a full lease duration.
    assert gap / 1e9 >= LEASE - 0.05, f"b acquired {gap / 1e9:.2f}s after a's last renewal"
    assert first_b.spec.lease_transitions == last_a.spec.lease_transitions + 1


async def test_a_leader_that_cannot_renew_stops_before_another_takes_over(
    etcd_cluster: EtcdCluster, apiserver: ApiServer
) -> None:
    lonely = ApiServer(api_config(etcd_cluster.endpoints))
    await lonely.start()
    lease_name = f"le-{uuid.uuid4().hex[:6]}"
    times: dict[str, float] = {}
    a_client = ApiClient(ClientConfig(endpoints=[f"127.0.0.1:{lonely.port}"], timeout=1))
    b_client = ApiClient(ClientConfig(endpoints=[f"127.0.0.1:{apiserver.port}"], timeout=5))

    def elector(client: ApiClient, name: str) -> LeaderElector:
        async def lead() -> None:
            times[f"{name}-start"] = time.monotonic()
            await asyncio.Event().wait()

        def stop() -> None:
            times[f"{name}-stop"] = time.monotonic()

        cfg = LeaderElectionConfig("navarch-system", lease_name, name, LEASE, RENEW, RETRY)
        return LeaderElector(client, cfg, on_started_leading=lead, on_stopped_leading=stop)

    a_run = asyncio.create_task(elector(a_client, "a").run())
    b_run: asyncio.Task[None] | None = None
    try:
        await eventually(lambda: "a-start" in times)
        b_run = asyncio.create_task(elector(b_client, "b").run())
        await asyncio.sleep(RETRY * 2)
        cut = time.monotonic()
        await lonely.stop(grace=0)  # a can no longer reach any API server
        await eventually(lambda: "b-start" in times, timeout=LEASE + RENEW + 10)
        await asyncio.wait_for(a_run, 5)  # run() returns once leadership is lost
        assert times["a-stop"] < times["b-start"]
        assert times["a-stop"] - cut <= RENEW + RETRY + 1.0
    finally:
        for task in (a_run, b_run):
            if task is not None:
                task.cancel()
        await asyncio.gather(a_run, *(t for t in [b_run] if t), return_exceptions=True)
        await a_client.close()
        await b_client.close()


def test_leader_election_config_requires_ordered_durations() -> None:
    with pytest.raises(ValueError, match="retry_period < renew_deadline < lease_duration"):
        LeaderElectionConfig("ns", "l", "me", lease_duration=10, renew_deadline=10, retry_period=2)
    assert LeaderElectionConfig("ns", "l", "me").lease_duration == 15.0
