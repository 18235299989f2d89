"""Reads that clients give up on must not bring etcd down (plausible bug, found by bench/scale.py: several
reads in one read-only transaction — BindPods' reads, the namespace count — and etcd before 3.5.5 panics when
the client cancels such a transaction, etcd-io/etcd#14110; the test's etcd is 3.5.1, where it does).

The store's multi-key reads are cancelled a few milliseconds in, hundreds of times, on an etcd of the
test's own; etcd must still be up and answering afterwards."""

from __future__ import annotations

import asyncio

from controlplane.api import kinds
from controlplane.launcher.etcd import EtcdCluster
from controlplane.storage import EtcdClient, EtcdConfig, Store


async def test_cancelled_multi_key_reads_leave_etcd_running() -> None:
    pods = kinds.lookup("Pod")
    namespaced = [info for info in kinds.KINDS if info.namespaced]
    with EtcdCluster(1, fast=False) as etcd:
        client = EtcdClient(EtcdConfig(endpoints=etcd.endpoints))
        await client.connect()
        try:
            for i in range(200):
                await client.kv.put(f"/registry/pods/ns/p{i}", b"x" * 500)
            store = Store(client)
            names = [("ns", f"p{i}") for i in range(100)]
            for _ in range(150):
                tasks: list[asyncio.Task[object]] = [asyncio.create_task(store.get_many(pods, names)) for _ in range(5)]
                tasks += [asyncio.create_task(store.count_in_namespace(namespaced, "ns")) for _ in range(5)]
                await asyncio.sleep(0.002)
                for t in tasks:
                    t.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
            assert etcd.members[0].running, "etcd died"
            assert etcd.members[0].healthy(timeout=5)
            counts = await store.count_in_namespace(namespaced, "ns")
            assert counts["Pod"] == 200
        finally:
            await client.close()
