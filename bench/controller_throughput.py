"""Controller manager on hollow nodes: a Deployment scaled up, rolled out and deleted.

Starts its own etcd (one member, fsync on), a ``navarch-apiserver``, one ``navarch-agent --hollow`` process
with ``--nodes`` simulated nodes (they report bound pods Running and Ready at once), a ``navarch-scheduler``
and a ``navarch-controller-manager``. Then, timed from the API call to the state seen by an informer:

1. a Deployment of ``--replicas`` is created: until every pod runs and the Deployment reports them available;
2. its template changes (RollingUpdate 25 %/25 %): until the rollout is complete and the old pods are gone;
3. it is deleted (background propagation): until the garbage collector has removed every pod.

Prints each phase's seconds and pods per second, and the controller manager's CPU seconds per 1,000 pods
over the whole run. Nothing is asserted: record the figures in docs/performance.md.

    python bench/controller_throughput.py [--nodes 100] [--replicas 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from common import cpu_seconds
from scheduler_throughput import wait_nodes

from controlplane.api.objects import from_manifest
from controlplane.api.pb import apps_pb2, core_pb2
from controlplane.client.client import ApiClient, ClientConfig
from controlplane.client.informer import Informer
from controlplane.launcher import processes
from controlplane.launcher.etcd import EtcdCluster, free_port

NAMESPACE = "bench"


def deployment(replicas: int) -> apps_pb2.Deployment:
    obj = from_manifest(
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "web", "namespace": NAMESPACE},
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {
                        "containers": [
                            {
                                "name": "c",
                                "command": ["sleep"],
                                "env": [{"name": "V", "value": "1"}],
                                "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}},
                            }
                        ]
                    },
                },
            },
        }
    )
    assert isinstance(obj, apps_pb2.Deployment)
    return obj


async def until(condition: Callable[[], bool], changed: asyncio.Event, timeout: float) -> float:
    """Seconds until ``condition()`` holds, re-checked whenever the informers report a change."""
    began = time.perf_counter()
    async with asyncio.timeout(timeout):
        while not condition():
            changed.clear()
            await changed.wait()
    return time.perf_counter() - began


async def measure(opts: argparse.Namespace, api: str, manager_pid: int) -> dict[str, float]:
    client = ApiClient(ClientConfig(endpoints=[api], timeout=60))
    try:
        await wait_nodes(client, opts.nodes, 300)
        await client.create(from_manifest({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}}))
        changed = asyncio.Event()
        pods: Informer[core_pb2.Pod] = Informer(client, core_pb2.Pod, namespace=NAMESPACE)
        deployments: Informer[apps_pb2.Deployment] = Informer(client, apps_pb2.Deployment, namespace=NAMESPACE)
        for inf in (pods, deployments):
            inf.add_event_handler(lambda _o: changed.set(), lambda _o, _n: changed.set(), lambda _o: changed.set())
        tasks = [asyncio.create_task(pods.run()), asyncio.create_task(deployments.run())]
        await pods.wait_for_sync(30)
        await deployments.wait_for_sync(30)
        n = opts.replicas

        def running(version: str) -> int:
            return sum(
                1
                for p in pods.store.objects()
                if p.status.phase == "Running"
                and not p.metadata.HasField("deletion_timestamp")
                and p.spec.containers[0].env[0].value == version
            )

        def available(version: str) -> bool:
            d = deployments.store.get(f"{NAMESPACE}/web")
            return (
                d is not None
                and d.status.observed_generation == d.metadata.generation
                and d.status.available_replicas == n == d.status.updated_replicas == d.status.replicas
                and running(version) == n
                and len(pods.store.objects()) == n
            )

        cpu_before = cpu_seconds(manager_pid)
        await client.create(deployment(n))
        scale_up = await until(lambda: available("1"), changed, opts.timeout)
        d = await client.get(apps_pb2.Deployment, "web", NAMESPACE)
        d.spec.template.spec.containers[0].env[0].value = "2"
        await client.update(d)
        rollout = await until(lambda: available("2"), changed, opts.timeout)
        await client.delete(apps_pb2.Deployment, "web", NAMESPACE)
        teardown = await until(lambda: not pods.store.objects(), changed, opts.timeout)
        cpu = cpu_seconds(manager_pid) - cpu_before
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    finally:
        await client.close()
    return {
        "scale_up": scale_up,
        "rollout": rollout,
        "teardown": teardown,
        "cpu_per_1000": cpu / (3 * n) * 1000,  # n created, n replaced (n created + n deleted), n deleted
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--nodes", type=int, default=100)
    parser.add_argument("--replicas", type=int, default=1000)
    parser.add_argument("--timeout", type=float, default=600.0)
    opts = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="navarch-bench-ctrl-"))
    etcd = EtcdCluster(1, fast=False).start()
    api = f"127.0.0.1:{free_port()}"
    daemons = [processes.apiserver(etcd.endpoints, api, workdir / "apiserver.log").start()]
    try:
        hollow = [
            str(processes.BIN / "navarch-agent"),
            "--server",
            api,
            "--hollow",
            "--count",
            str(opts.nodes),
            "--capacity",
            "cpu=32,memory=128Gi,pods=110",
        ]
        daemons.append(processes.Daemon("hollow", hollow, workdir / "hollow.log").start())
        daemons.append(processes.scheduler([api], "127.0.0.1:0", workdir / "scheduler.log").start())
        manager = processes.controller_manager([api], "127.0.0.1:0", workdir / "controller-manager.log").start()
        daemons.append(manager)
        assert manager.proc is not None
        r = asyncio.run(measure(opts, api, manager.proc.pid))
    finally:
        for d in reversed(daemons):
            d.stop()
        etcd.stop()
    n = opts.replicas
    print(f"# controller_throughput: {opts.nodes} hollow nodes, a Deployment of {n} replicas")
    print(f"# {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, etcd fsync on")
    print(f"create -> {n} available (s, pods/s):        {r['scale_up']:7.1f}  {n / r['scale_up']:7.0f}")
    print(f"template change -> rolled out (s, pods/s): {r['rollout']:7.1f}  {n / r['rollout']:7.0f}")
    print(f"delete -> every pod gone (s, pods/s):      {r['teardown']:7.1f}  {n / r['teardown']:7.0f}")
    print(f"controller-manager CPU s per 1,000 pod changes: {r['cpu_per_1000']:.2f}")


if __name__ == "__main__":
    main()
