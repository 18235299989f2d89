"""The agent's Lease heartbeat costs one API call per renewal, and recovers from someone else's write or a
deletion at once (plausible bugs: a Get before every Update, doubling the heartbeat load of every node; a
cached Lease that, once stale, makes every later renewal fail)."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

from controlplane.api.pb import coordination_pb2
from controlplane.apiserver.main import ApiServer
from controlplane.client.client import ApiClient, ClientConfig
from nodeagent.config import AgentConfig
from nodeagent.node import LEASE_NAMESPACE, NodeManager


class CountingClient(ApiClient):
    """A real client that counts its calls by verb."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.calls: dict[str, int] = {}

    def _count(self, verb: str) -> None:
        self.calls[verb] = self.calls.get(verb, 0) + 1

    async def get(self, *args: Any, **kwargs: Any) -> Any:
        self._count("get")
        return await super().get(*args, **kwargs)

    async def update(self, *args: Any, **kwargs: Any) -> Any:
        self._count("update")
        return await super().update(*args, **kwargs)

    async def create(self, *args: Any, **kwargs: Any) -> Any:
        self._count("create")
        return await super().create(*args, **kwargs)


async def test_a_renewal_is_one_update_and_a_stale_or_deleted_lease_is_recovered_at_once(
    apiserver: ApiServer, tmp_path: Path
) -> None:
    name = f"lease-{uuid.uuid4().hex[:8]}"
    client = CountingClient(ClientConfig(endpoints=[f"127.0.0.1:{apiserver.port}"], timeout=10))
    other = ApiClient(ClientConfig(endpoints=[f"127.0.0.1:{apiserver.port}"], timeout=10))
    config = AgentConfig(
        servers=[f"127.0.0.1:{apiserver.port}"], node_name=name, node_ip="127.0.0.1", data_dir=tmp_path
    )
    manager = NodeManager(client, config, agent_port=1)
    try:
        await manager.renew_lease()
        assert client.calls == {"get": 1, "create": 1}
        times = []
        for _ in range(5):
            await manager.renew_lease()
            times.append((await other.get(coordination_pb2.Lease, name, LEASE_NAMESPACE)).spec.renew_time)
        assert client.calls == {"get": 1, "create": 1, "update": 5}
        assert len({t.ToNanoseconds() for t in times}) == 5  # each renewal moved renewTime

        # Someone else writes the Lease: the next renewal conflicts, reads it again and renews, in one go.
        lease = await other.get(coordination_pb2.Lease, name, LEASE_NAMESPACE)
        lease.metadata.labels["touched"] = "yes"
        touched = await other.update(lease)
        await manager.renew_lease()
        after = await other.get(coordination_pb2.Lease, name, LEASE_NAMESPACE)
        assert int(after.metadata.resource_version) > int(touched.metadata.resource_version)
        assert after.metadata.labels["touched"] == "yes" and after.spec.renew_time != touched.spec.renew_time

        # Deleted: the next renewal finds out and creates it again.
        await other.delete(coordination_pb2.Lease, name, LEASE_NAMESPACE)
        await manager.renew_lease()
        assert (await other.get(coordination_pb2.Lease, name, LEASE_NAMESPACE)).spec.holder_identity == name
    finally:
        await client.close()
        await other.close()
