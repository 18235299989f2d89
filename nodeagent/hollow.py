"""Hollow nodes: N simulated nodes in one process, for scale tests and benchmarks only.

Each hollow node registers (label ``navarch.io/hollow=true``), renews its Lease and writes its status at the
real agent's periods and reports the pods bound to it Running, without starting any process; a deleted pod
is removed at once. The conditions are fixed (Ready, no pressure): measuring the host once per simulated
node would be pointless.

Watches: by default every hollow node holds its own ``spec.nodeName=<node>`` list and watch, as real agents
do (kubemark's model), so the API server serves one watch per node. ``shared_watch=True``
(``--hollow-watch shared``) uses one pod informer for all of them instead: cheaper for the hollow process,
but it hides the per-watcher cost of the API server.
"""

from __future__ import annotations

import asyncio
import logging
import random
from dataclasses import replace

from controlplane.api.errors import ApiError, ConflictError, NotFoundError
from controlplane.api.pb import core_pb2, meta_pb2
from controlplane.client.client import ApiClient
from controlplane.client.informer import Informer
from nodeagent.config import AgentConfig
from nodeagent.node import NodeManager

log = logging.getLogger(__name__)

HOLLOW_LABEL = "navarch.io/hollow"
WATCHES_PER_CONNECTION = 100
"""Per-node watches sharing one connection (each real agent has its own)."""


class HollowNodeManager(NodeManager):
    """A NodeManager whose conditions are always healthy."""

    def conditions(self) -> list[meta_pb2.Condition]:
        """Ready, and no pressure."""
        out = [meta_pb2.Condition(type="Ready", status="True", reason="AgentReady", message="hollow node")]
        for kind in ("MemoryPressure", "DiskPressure", "PIDPressure"):
            out.append(meta_pb2.Condition(type=kind, status="False", reason=f"No{kind}"))
        for c in out:
            c.last_transition_time.GetCurrentTime()
            c.last_transition_time.nanos = 0
        return out


class HollowNodes:
    """``count`` hollow nodes named ``prefix0 .. prefixN-1``, sharing one client; one pod watch per node (or
    one shared pod informer)."""

    def __init__(
        self,
        client: ApiClient,
        base: AgentConfig,
        count: int,
        prefix: str,
        *,
        writers: int = 32,
        shared_watch: bool = False,
    ) -> None:
        self.client = client
        labels = {**base.labels, HOLLOW_LABEL: "true"}
        self.managers = [
            HollowNodeManager(client, replace(base, node_name=f"{prefix}{i}", labels=labels), agent_port=0)
            for i in range(count)
        ]
        self.names = {m.config.node_name for m in self.managers}
        self._watch_clients: list[ApiClient] = []
        if shared_watch:
            self.informers: list[Informer[core_pb2.Pod]] = [Informer(client, core_pb2.Pod)]
        else:
            # Real agents each hold their own connection; thousands of watches on one HTTP/2 connection are
            # not what an API server meets (and gRPC cancels streams opened on one in a burst).
            names = sorted(self.names)
            self.informers = []
            for i in range(0, len(names), WATCHES_PER_CONNECTION):
                watcher = ApiClient(client.config)
                self._watch_clients.append(watcher)
                self.informers.extend(
                    Informer(watcher, core_pb2.Pod, field_selector=f"spec.nodeName={name}")
                    for name in names[i : i + WATCHES_PER_CONNECTION]
                )
        for informer in self.informers:
            informer.add_event_handler(self._seen, lambda old, new: self._seen(new), None)
        self._todo: asyncio.Queue[core_pb2.Pod] = asyncio.Queue()
        self._writers = writers
        self.registered = asyncio.Event()

    def _seen(self, pod: core_pb2.Pod) -> None:
        if pod.spec.node_name not in self.names:
            return
        deleting = pod.metadata.HasField("deletion_timestamp")
        if deleting or pod.status.phase not in ("Running", "Succeeded", "Failed"):
            self._todo.put_nowait(pod)

    async def run(self) -> None:
        """Register every node, then heartbeat and serve pods until cancelled."""
        slots = asyncio.Semaphore(self._writers)

        async def register(m: NodeManager) -> None:
            async with slots:
                await m.register_with_retry()

        try:
            await asyncio.gather(*(register(m) for m in self.managers))
            self.registered.set()
            log.info("%d hollow nodes registered", len(self.managers))
            async with asyncio.TaskGroup() as tg:
                for m in self.managers:
                    tg.create_task(self._heartbeat(m), name=f"hollow-{m.config.node_name}")
                for i, informer in enumerate(self.informers):
                    tg.create_task(self._watch(informer, i), name=f"hollow-pod-informer-{i}")
                for i in range(self._writers):
                    tg.create_task(self._pod_writer(), name=f"hollow-pod-writer-{i}")
        finally:
            await self.close()

    async def _watch(self, informer: Informer[core_pb2.Pod], index: int) -> None:
        # Agents start at different moments: the watches open over about one second per thousand nodes.
        await asyncio.sleep(index * 0.001)
        await informer.run()

    async def close(self) -> None:
        """Close the watch connections (the caller owns the shared client)."""
        for watcher in self._watch_clients:
            await watcher.close()

    async def _heartbeat(self, m: NodeManager) -> None:
        # Spread the first renewals over one interval, so N nodes do not renew in lockstep.
        await asyncio.sleep(random.uniform(0, m.config.lease_interval))
        await m.run()

    async def _pod_writer(self) -> None:
        while True:
            pod = await self._todo.get()
            try:
                if pod.metadata.HasField("deletion_timestamp"):
                    m = pod.metadata
                    await self.client.delete(core_pb2.Pod, m.name, m.namespace, grace_period_seconds=0, uid=m.uid)
                else:
                    await self.client.update_status(running(pod))
            except (ConflictError, NotFoundError):
                pass  # changed or gone meanwhile: the informer brings the new version if there is one
            except ApiError as err:
                log.warning("hollow pod %s: %s", pod.metadata.name, err.message)


def running(pod: core_pb2.Pod) -> core_pb2.Pod:
    """The pod as a real agent would report it once every container runs."""
    out = core_pb2.Pod()
    out.CopyFrom(pod)
    status = out.status
    status.phase = "Running"
    status.host_ip = status.pod_ip = "127.0.0.1"
    if not status.HasField("start_time"):
        status.start_time.GetCurrentTime()
    del status.container_statuses[:]
    for c in pod.spec.containers:
        cs = status.container_statuses.add(name=c.name, image=c.image, ready=True, started=True)
        cs.state.running.started_at.CopyFrom(status.start_time)
    del status.conditions[:]
    for kind in ("PodScheduled", "Initialized", "ContainersReady", "Ready"):
        cond = status.conditions.add(type=kind, status="True")
        cond.last_transition_time.CopyFrom(status.start_time)
    return out
