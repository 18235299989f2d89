"""The agent: registers its Node, watches the Pods bound to it, and runs one PodWorker per pod.

On start it reads the pod records left on disk by an earlier agent: pods still bound here get their
workers back (which adopt the running processes); records of pods that were deleted or re-bound while the
agent was away are cleaned up (processes killed, sandbox removed).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import signal
import socket

from controlplane import transport
from controlplane.api.pb import core_pb2, podaccess_pb2_grpc
from controlplane.client.client import ApiClient, ClientConfig
from controlplane.client.events import EventRecorder
from controlplane.client.informer import Informer
from nodeagent import supervisor
from nodeagent.access import AgentAccessService, allowed_networks
from nodeagent.artifacts import ArtifactCache
from nodeagent.certificates import CertificateRenewer, NodeCredentials
from nodeagent.cgroups import CgroupDriver
from nodeagent.config import AgentConfig
from nodeagent.forkserver import ForkServer
from nodeagent.localvolumes import LocalVolumes
from nodeagent.node import NodeManager
from nodeagent.pod.context import AgentContext, PortAllocator
from nodeagent.pod.process import ShimProcesses
from nodeagent.pod.worker import PodWorker
from nodeagent.proxy import ServiceProxy
from nodeagent.sandbox import Sandbox
from nodeagent.state import PodRecord, StateStore

log = logging.getLogger(__name__)


class Agent:
    """A running node agent; owns every task it starts."""

    def __init__(self, config: AgentConfig) -> None:
        self.config = config
        self.client = ApiClient(ClientConfig(endpoints=config.servers))
        self.state = StateStore(config.data_dir)
        self.recorder = EventRecorder(self.client, "navarch-agent", config.node_name)
        self.cgroups = CgroupDriver.detect(config.node_name) if config.cgroups else None
        self.proxy = ServiceProxy(self.client, config.node_ip, config.proxy_balance) if config.service_proxy else None
        self.launcher = ForkServer(config.data_dir / "forkserver.log")
        self.ctx = AgentContext(
            self.client,
            config,
            self.state,
            self.recorder,
            PortAllocator(*config.dynamic_ports),
            self.cgroups,
            ShimProcesses(self.launcher),
            artifacts=ArtifactCache(
                config.data_dir / "artifacts",
                max_bytes=config.artifact_cache_bytes,
                timeout=config.artifact_timeout,
                ca_file=config.artifact_ca_file,
                file_urls=config.artifact_file_urls,
            ),
            local_volumes=LocalVolumes(config.data_dir / "local-volumes", config.node_name),
        )
        if self.proxy is not None:
            services = self.proxy.services.store
            self.ctx.services = lambda namespace: services.by_index("namespace", namespace)
        self.node = NodeManager(self.client, config, agent_port=0)
        self.credentials = NodeCredentials(config.tls, config.node_name, config.node_ip) if config.tls else None
        self.server = transport.make_server()
        podaccess_pb2_grpc.add_AgentServicer_to_server(
            AgentAccessService(
                lambda: list(self.workers.values()),
                allowed_networks(config.servers, config.proxy_from),
                config.node_name,
                tls=config.tls is not None,
            ),
            self.server,
        )
        self.informer: Informer[core_pb2.Pod] = Informer(
            self.client, core_pb2.Pod, field_selector=f"spec.nodeName={config.node_name}"
        )
        self.workers: dict[str, PodWorker] = {}
        self._worker_tasks: dict[str, asyncio.Task[None]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._records: dict[str, PodRecord] = {}
        self.ready = asyncio.Event()

    async def start(self) -> None:
        """Serve, register, list the node's pods, adopt or clean up what the last agent left, and start working."""
        server_credentials = None
        if self.credentials is not None:
            await self.credentials.ensure()
            await self.client.reconnect(self.credentials.channel_tls())
            server_credentials = self.credentials.server_credentials()
            renewer = CertificateRenewer(self.credentials, lambda: self.client.channel, self.client.reconnect)
            self._tasks.append(asyncio.create_task(renewer.run(), name="certificate-renewer"))
        self.node.agent_port = transport.add_port(self.server, self.config.listen, server_credentials)
        await self.server.start()
        await asyncio.to_thread(self.launcher.warm_up)
        await self.node.register_with_retry()
        self.recorder.start()
        self._records = self.state.load_all()
        for record in self._records.values():
            for port in record.ports.values():
                self.ctx.ports.reserve(port)  # before any new pod is given a port
        self.informer.add_event_handler(self._on_pod, lambda old, new: self._on_pod(new), self._on_delete)
        self._tasks.append(asyncio.create_task(self.informer.run(), name="pod-informer"))
        self._tasks.append(asyncio.create_task(self.node.run(), name="node-heartbeat"))
        self._tasks.append(asyncio.create_task(self._collect_local_volumes(), name="local-volume-collector"))
        if self.proxy is not None:
            self._tasks.append(asyncio.create_task(self.proxy.run(), name="service-proxy"))
        await self.informer.wait_for_sync(60)
        bound = {p.metadata.uid for p in self.informer.store.objects()}
        for uid, record in list(self._records.items()):
            if uid not in bound:
                log.info(
                    "pod %s/%s (%s) is no longer bound here: stopping what is left of it",
                    record.namespace,
                    record.name,
                    uid,
                )
                self._tasks.append(asyncio.create_task(self._clean_up(record), name=f"cleanup-{uid}"))
        self.ready.set()

    def _on_pod(self, pod: core_pb2.Pod) -> None:
        uid = pod.metadata.uid
        worker = self.workers.get(uid)
        if worker is not None:
            worker.update(pod)
            return
        worker = PodWorker(self.ctx, pod, self._records.pop(uid, None))
        self.workers[uid] = worker
        task = asyncio.create_task(worker.run(), name=f"worker-{pod.metadata.namespace}/{pod.metadata.name}")
        self._worker_tasks[uid] = task
        task.add_done_callback(functools.partial(self._worker_done, uid))

    def _worker_done(self, uid: str, task: asyncio.Task[None]) -> None:
        worker = self.workers.pop(uid, None)
        if worker is not None:
            self.ctx.ports.release(worker.record.ports.values())
        self._worker_tasks.pop(uid, None)
        if not task.cancelled() and task.exception() is not None:
            log.error("pod worker %s failed", uid, exc_info=task.exception())

    def _on_delete(self, pod: core_pb2.Pod) -> None:
        worker = self.workers.get(pod.metadata.uid)
        if worker is not None:
            worker.gone()

    async def _collect_local_volumes(self, every: float = 60.0) -> None:
        """Remove, now and then, the local volume directories whose PersistentVolume was deleted."""
        local = self.ctx.local_volumes
        assert local is not None
        while True:
            try:
                await local.collect(self.client)
            except OSError as err:
                log.warning("local volumes: %s", err)
            await asyncio.sleep(every)

    async def _clean_up(self, record: PodRecord) -> None:
        sandbox = Sandbox(self.state.pod_dir(record.uid))
        for name, c in record.containers.items():
            if c.shim_pid:
                proc = supervisor.adopt(c.shim_pid, c.shim_start, sandbox.container_dir(name))
                proc.signal_group(signal.SIGKILL)
                await proc.wait()
        sandbox.remove()
        self.ctx.ports.release(record.ports.values())
        if self.cgroups is not None:
            self.cgroups.remove_pod(record.uid)

    async def stop(self) -> None:
        """Stop the agent; workloads keep running unless drain_on_exit."""
        if self.config.drain_on_exit:
            for worker in list(self.workers.values()):
                worker.drain()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.gather(*self._worker_tasks.values(), return_exceptions=True), 60)
        await self.server.stop(1.0)
        for task in [*self._worker_tasks.values(), *self._tasks]:
            task.cancel()
        await asyncio.gather(*self._worker_tasks.values(), *self._tasks, return_exceptions=True)
        await self.recorder.stop()
        await self.client.close()
        await asyncio.to_thread(self.launcher.close)


def default_node_name() -> str:
    """The host name, lower-cased (node names are DNS subdomains)."""
    return socket.gethostname().lower()
