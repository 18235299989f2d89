"""How Navarch's costs grow with the cluster: hollow nodes and pods in steps, every figure per step, one run.

Starts one etcd member (fsync on), one ``navarch-apiserver``, one ``navarch-scheduler`` and, per step, one
more ``navarch-agent --hollow`` process, so that the cluster has the step's node count. Every hollow node
holds its own ``spec.nodeName`` watch, renews its Lease every 10 s and writes its status every 60 s (the real
agent's periods) and reports its pods Running. Then the step's pods are created (``--pods-per-node`` per
node, 32 concurrent creators) and bound by the scheduler, and the step reports:

- API server CPU per pod (all its work during the step, leases and status writes included, divided by the
  pods created), and the hollow processes' own CPU over the same time, to subtract;
- pods created and bound per second, mutating-call (Create) p99, create -> Running p99;
- namespaced List p99 (10 pods in a namespace of their own) and cluster-wide List of pods p99 (paged);
- delivery p99 to a node's own watch: pods created already bound to one of 20 sampled nodes, timed from the
  create call to the event on that node's ``spec.nodeName`` watch;
- API server, scheduler and etcd RSS, etcd's database size;
- raw etcd puts per second from Python, measured in the same run before the first step, and the ratios.

Nothing is asserted: record the table in docs/performance.md.

    python bench/scale.py [--steps 100,1000,5000] [--pods-per-node 30]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import random
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from common import cpu_seconds, etcd_put_rate, pct, rss_mib

from controlplane.api.errors import AlreadyExistsError, ApiError, DeadlineError, UnavailableError
from controlplane.api.objects import from_manifest
from controlplane.api.pb import core_pb2
from controlplane.client.client import ApiClient, ClientConfig
from controlplane.launcher import processes
from controlplane.launcher.etcd import EtcdCluster, free_port

CREATORS = 32
SAMPLED_NODES = 20
PROBES = 200


def pod(name: str, namespace: str, node: str = "") -> core_pb2.Pod:
    """A small pod with requests (so that the scheduler's resource plugins work), optionally pre-bound."""
    spec: dict[str, object] = {
        "containers": [{"name": "c", "command": ["sleep"], "resources": {"requests": {"cpu": "10m", "memory": "8Mi"}}}]
    }
    if node:
        spec["nodeName"] = node
    obj = from_manifest(
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": namespace}, "spec": spec}
    )
    assert isinstance(obj, core_pb2.Pod)
    return obj


@dataclass
class Tracker:
    """When each pod was created, first seen bound and first seen Running (one cluster-wide watch, as a
    controller holds)."""

    created: dict[str, float] = field(default_factory=dict)
    bound: dict[str, float] = field(default_factory=dict)
    running: dict[str, float] = field(default_factory=dict)
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    async def follow(self, client: ApiClient) -> None:
        rv = (await client.list(core_pb2.Pod, limit=1)).resource_version
        while True:
            try:
                async for ev in client.watch(core_pb2.Pod, "bench", resource_version=rv):
                    if ev.type == "BOOKMARK":
                        rv = ev.resource_version
                        continue
                    # One revision may hold a whole batch of bindings: resume from the one before.
                    rv = str(int(ev.resource_version) - 1)
                    p: core_pb2.Pod = ev.object
                    now = time.monotonic()
                    if p.spec.node_name and p.metadata.name not in self.bound:
                        self.bound[p.metadata.name] = now
                        self.changed.set()
                    if p.status.phase == "Running" and p.metadata.name not in self.running:
                        self.running[p.metadata.name] = now
                        self.changed.set()
            except Exception as err:  # the bench's own watch: keep going, from where it was
                print(f"# tracker watch: {err}; again")
                await asyncio.sleep(0.5)


async def wait_for(what: str, check: object, timeout: float) -> None:
    """Poll an async predicate once a second until true, or give up loudly."""
    assert callable(check)
    deadline = time.monotonic() + timeout
    while True:
        try:
            if await check():
                return
        except ApiError as err:  # e.g. a call cancelled while thousands of watches open at once: ask again
            print(f"# {what}: {err.message}; again", flush=True)
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {timeout:.0f}s")
        await asyncio.sleep(1)


async def node_count(client: ApiClient) -> int:
    return len((await client.list(core_pb2.Node)).items)


async def list_p99(client: ApiClient, namespace: str, times: int) -> float:
    took = []
    for _ in range(times):
        began = time.perf_counter()
        await client.list(core_pb2.Pod, namespace)
        took.append(time.perf_counter() - began)
    return pct(took, 99)


async def delivery_p99(client: ApiClient, nodes: list[str], tag: str) -> float:
    """Create PROBES pods pre-bound to sampled nodes; time create-call start -> event on that node's watch."""
    seen: dict[str, float] = {}
    started: dict[str, float] = {}
    ready = 0
    all_ready = asyncio.Event()

    async def watch(node: str) -> None:
        nonlocal ready
        rv = (await client.list(core_pb2.Pod, "probe", field_selector=f"spec.nodeName={node}")).resource_version
        ready += 1
        if ready == len(nodes):
            all_ready.set()
        async for ev in client.watch(
            core_pb2.Pod, "probe", resource_version=rv, field_selector=f"spec.nodeName={node}"
        ):
            if ev.type == "ADDED" and ev.object.metadata.name not in seen:
                seen[ev.object.metadata.name] = time.monotonic()

    watchers = [asyncio.create_task(watch(n)) for n in nodes]
    try:
        await asyncio.wait_for(all_ready.wait(), 60)
        names = [f"probe-{tag}-{i}" for i in range(PROBES)]

        async def create(name: str) -> None:
            started[name] = time.monotonic()
            await client.create(pod(name, "probe", random.choice(nodes)))

        for i in range(0, PROBES, 20):  # 20 at a time: latency, not a flood
            await asyncio.gather(*(create(n) for n in names[i : i + 20]))
        deadline = time.monotonic() + 60
        while len([n for n in names if n in seen]) < PROBES and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.2)
        return pct([seen[n] - started[n] for n in names if n in seen], 99)
    finally:
        for w in watchers:
            w.cancel()
        await asyncio.gather(*watchers, return_exceptions=True)


def etcd_db_mib(etcd: EtcdCluster) -> float:
    found = list(etcd.members[0].data_dir.glob("**/member/snap/db"))
    return found[0].stat().st_size / 2**20 if found else 0.0


HEADER = (
    "| nodes | pods | API CPU ms/pod | hollow CPU ms/pod | created/s | bound/s | Create p99 ms "
    "| create→Running p99 s | ns List p99 ms | all-pods List p99 s | node-watch delivery p99 ms "
    "| API RSS MiB | sched RSS MiB | etcd RSS MiB | etcd DB MiB |"
)


@dataclass
class Run:
    """One benchmark run's cluster and what it has grown to."""

    opts: argparse.Namespace
    etcd: EtcdCluster
    api: str
    pids: dict[str, int]
    workdir: Path
    daemons: list[processes.Daemon]
    client: ApiClient
    tracker: Tracker = field(default_factory=Tracker)
    hollow_pids: list[int] = field(default_factory=list)
    nodes: int = 0
    pods: int = 0
    create_errors: int = 0

    async def grow_nodes(self, step: int, nodes: int) -> None:
        """Start one more hollow process so that the cluster has ``nodes`` nodes, and wait for them."""
        argv = [
            str(processes.BIN / "navarch-agent"),
            "--server",
            self.api,
            "--hollow",
            "--count",
            str(nodes - self.nodes),
            "--name-prefix",
            f"s{step}-",
            "--capacity",
            "cpu=32,memory=128Gi,pods=110",
        ]
        daemon = processes.Daemon(f"hollow-{step}", argv, self.workdir / f"hollow-{step}.log").start()
        self.daemons.append(daemon)
        assert daemon.proc is not None
        self.hollow_pids.append(daemon.proc.pid)
        began = time.monotonic()

        async def registered() -> bool:
            return await node_count(self.client) >= nodes

        await wait_for(f"{nodes} nodes registered", registered, 900)
        self.nodes = nodes
        print(f"# step {step}: {nodes} nodes registered in {time.monotonic() - began:.0f}s", flush=True)
        await asyncio.sleep(5)  # let the new watches open

    async def create_pods(self, names: list[str]) -> tuple[float, list[float]]:
        """Create pods with CREATORS concurrent callers; (seconds taken, each Create's latency)."""
        latencies: list[float] = []
        queue = iter(names)

        async def creator() -> None:
            for name in queue:
                t0 = time.monotonic()
                self.tracker.created[name] = t0
                for attempt in range(5):  # as any client would: a busy etcd (a compaction) is not the end
                    try:
                        await self.client.create(pod(name, "bench"))
                        break
                    except AlreadyExistsError:
                        break  # an earlier attempt made it
                    except (UnavailableError, DeadlineError) as err:
                        self.create_errors += 1
                        print(f"# create {name}: {err.message}; again", flush=True)
                        await asyncio.sleep(0.5 * 2**attempt)
                latencies.append(time.monotonic() - t0)

        began = time.monotonic()
        await asyncio.gather(*(creator() for _ in range(CREATORS)))
        return time.monotonic() - began, latencies

    async def step(self, step: int, nodes: int, put_rate: float) -> str:
        """Grow to ``nodes``, add their pods, measure; the step's table row."""
        await self.grow_nodes(step, nodes)
        target = nodes * self.opts.pods_per_node
        names = [f"p{i}" for i in range(self.pods, target)]
        api0, hollow0 = cpu_seconds(self.pids["api"]), sum(cpu_seconds(p) for p in self.hollow_pids)
        began = time.monotonic()
        created_in, latencies = await self.create_pods(names)
        self.pods = target

        async def all_running() -> bool:
            return all(n in self.tracker.running for n in names)

        await wait_for(f"{len(names)} pods Running", all_running, 1800)
        elapsed = time.monotonic() - began
        api_cpu = cpu_seconds(self.pids["api"]) - api0
        hollow_cpu = sum(cpu_seconds(p) for p in self.hollow_pids) - hollow0
        bound_times = sorted(self.tracker.bound[n] for n in names)
        lo, hi = bound_times[len(bound_times) // 10], bound_times[len(bound_times) * 9 // 10]
        bound_rate = (len(bound_times) * 0.8) / max(hi - lo, 1e-6)
        to_running = [self.tracker.running[n] - self.tracker.created[n] for n in names]
        every = [f"s{s}-{i}" for s in range(step + 1) for i in range(_size(self.opts.steps, s))]
        delivery = await delivery_p99(self.client, random.sample(every, min(SAMPLED_NODES, len(every))), str(step))
        ns_list = await list_p99(self.client, "small", 20)
        all_list = await list_p99(self.client, "", 3)
        created_rate = len(names) / created_in
        print(
            f"# step {step}: {elapsed:.0f}s; created/s / etcd puts/s = {created_rate / put_rate:.3f}, "
            f"bound/s / etcd puts/s = {bound_rate / put_rate:.3f}; Creates retried: {self.create_errors}",
            flush=True,
        )
        return (
            f"| {nodes:,} | {target:,} | {api_cpu / len(names) * 1000:.2f} | {hollow_cpu / len(names) * 1000:.2f} "
            f"| {created_rate:.0f} | {bound_rate:.0f} | {pct(latencies, 99):.0f} | {pct(to_running, 99) / 1000:.1f} "
            f"| {ns_list:.0f} | {all_list / 1000:.2f} | {delivery:.0f} | {rss_mib(self.pids['api']):.0f} "
            f"| {rss_mib(self.pids['scheduler']):.0f} | {rss_mib(self.pids['etcd']):.0f} "
            f"| {etcd_db_mib(self.etcd):.1f} |"
        )


async def run_steps(run: Run) -> None:
    client = run.client
    put_rate = await etcd_put_rate(run.etcd.endpoints)
    print(f"raw etcd puts per second (Python, 16 clients, same run): {put_rate:.0f}")
    for ns in ("bench", "probe", "small"):
        await client.create(from_manifest({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}))
    for i in range(10):
        await client.create(pod(f"small-{i}", "small"))
    follower = asyncio.create_task(run.tracker.follow(client))
    rows = []
    try:
        for step, nodes in enumerate(run.opts.steps):
            rows.append(await run.step(step, nodes, put_rate))
            print(HEADER)
            print("|" + "---|" * 15)
            for r in rows:
                print(r, flush=True)
    finally:
        follower.cancel()
        await asyncio.gather(follower, return_exceptions=True)


def _size(steps: list[int], index: int) -> int:
    """How many hollow nodes step ``index`` added."""
    return steps[index] - (steps[index - 1] if index else 0)


async def _main(
    opts: argparse.Namespace,
    etcd: EtcdCluster,
    api: str,
    pids: dict[str, int],
    workdir: Path,
    daemons: list[processes.Daemon],
) -> None:
    client = ApiClient(ClientConfig(endpoints=[api], timeout=120))
    try:
        await run_steps(Run(opts, etcd, api, pids, workdir, daemons, client))
    finally:
        await client.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", default="100,1000,5000", help="node counts, ascending")
    parser.add_argument("--pods-per-node", type=int, default=30)
    opts = parser.parse_args()
    opts.steps = [int(s) for s in opts.steps.split(",")]
    workdir = Path(tempfile.mkdtemp(prefix="navarch-bench-scale-"))
    print(f"# scale: steps {opts.steps} nodes, {opts.pods_per_node} pods per node; logs in {workdir}")
    print(f"# {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, etcd fsync on")
    etcd = EtcdCluster(1, base_dir=workdir / "etcd", fast=False).start()  # kept: its log stays with the others
    api = f"127.0.0.1:{free_port()}"
    daemons = [
        processes.apiserver(etcd.endpoints, api, workdir / "apiserver.log").start(),
        processes.scheduler([api], "127.0.0.1:0", workdir / "scheduler.log").start(),
    ]
    try:
        proc = etcd.members[0].process
        assert proc is not None and daemons[0].proc is not None and daemons[1].proc is not None
        pids = {"etcd": proc.pid, "api": daemons[0].proc.pid, "scheduler": daemons[1].proc.pid}
        asyncio.run(_main(opts, etcd, api, pids, workdir, daemons))
    finally:
        for d in reversed(daemons):
            d.stop()
        etcd.stop()


if __name__ == "__main__":
    main()
