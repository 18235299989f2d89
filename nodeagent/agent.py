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
from controlplane.api.pb import core_pb2, metrics_pb2, podaccess_pb2_grpc
from controlplane.client.client import ApiClient, ClientConfig
from controlplane.client.events import EventRecorder
from controlplane.client.informer import Informer
from controlplane.client.metricsendpoint import EndpointSecurity, MetricsEndpoint, delegated_authorizer
from nodeagent import metrics, nativeshim, supervisor
from nodeagent.access import AgentAccessService, allowed_networks
from nodeagent.artifacts import ArtifactCache
from nodeagent.certificates import CertificateRenewer, NodeCredentials
from nodeagent.cgroups import CgroupDriver
from nodeagent.config import AgentConfig
from nodeagent.forkserver import ForkServer
from nodeagent.limitsobserver import LimitsObserver
from nodeagent.localvolumes import LocalVolumes
from nodeagent.node import NodeManager
from nodeagent.pod.context import AgentContext, PortAllocator
from nodeagent.pod.process import ShimProcesses
from nodeagent.pod.worker import PodWorker
from nodeagent.proxy import ServiceProxy
from nodeagent.sandbox import Sandbox
from nodeagent.state import PodRecord, StateStore
from nodeagent.usage import RunningContainer, UsageSampler, to_report

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
        native = nativeshim.build(config.data_dir) if config.shim != "python" else None
        if config.shim == "native" and native is None:
            raise OSError("--shim native: the native container supervisor cannot be built (see the log above)")
        self.launcher = ForkServer(config.data_dir / "forkserver.log", native)
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
                usage=self._usage_report,
            ),
            self.server,
        )
        self.usage = UsageSampler(
            self._running_containers, self.cgroups, config.data_dir, interval=config.usage_interval
        )
        metrics.AGENTS.track(
            self,
            metrics.AgentFigures(
                running_pods=lambda: sum(1 for w in self.workers.values() if w.phase == "Running"),
                running_containers=lambda: sum(len(w.running_containers) for w in self.workers.values()),
                usage=lambda: self.usage.latest,
                sample_cost=lambda: self.usage.sample_seconds,
            ),
        )
        self.metrics_endpoint: MetricsEndpoint | None = None
        if config.limits_mode == "observe":
            observer = LimitsObserver(self.recorder.event, self._instance_of)
            self.usage.on_sample.append(lambda sample: observer.check(sample, [w.pod for w in self.workers.values()]))
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
        if self.config.metrics_listen:
            self.metrics_endpoint = MetricsEndpoint(
                self.config.metrics_listen, security=self._metrics_security(), ready=lambda: _ready_of(self)
            )
            await self.metrics_endpoint.start()
            log.info("metrics on %s://%s", self.metrics_endpoint.scheme, self.config.metrics_listen)
            if self.credentials is not None:
                self._tasks.append(asyncio.create_task(self._reload_metrics_tls(), name="metrics-tls-reload"))
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
        self._tasks.append(asyncio.create_task(self.usage.run(), name="usage-sampler"))
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

    def _instance_of(self, pod_uid: str, container: str) -> int:
        worker = self.workers.get(pod_uid)
        return worker.record.container(container).restart_count if worker is not None else 0

    def _running_containers(self) -> list[RunningContainer]:
        return [c for w in list(self.workers.values()) for c in w.running_containers]

    def _usage_report(self) -> metrics_pb2.UsageReport | None:
        latest = self.usage.latest
        return to_report(self.config.node_name, latest) if latest is not None else None

    def _serving_files(self) -> tuple[str, str, str]:
        """The node certificate, key and cluster CA as files: the stored (joined or renewed) set, else the
        pre-issued one given on the command line."""
        c, tls = self.credentials, self.config.tls
        assert c is not None and tls is not None
        if c.cert_path.exists() and c.key_path.exists() and c.ca_path.exists():
            return str(c.cert_path), str(c.key_path), str(c.ca_path)
        if tls.cert_file and tls.key_file and tls.ca_file:
            return tls.cert_file, tls.key_file, tls.ca_file
        raise OSError(f"no node certificate files in {tls.cert_dir} for the metrics endpoint")

    def _metrics_security(self) -> EndpointSecurity | None:
        if self.credentials is None:
            return None
        cert, key, ca = self._serving_files()
        return EndpointSecurity(cert, key, ca, delegated_authorizer(self.client.call_auth))

    async def _reload_metrics_tls(self, every: float = 60.0) -> None:
        """Serve a renewed node certificate on the metrics endpoint too."""
        assert self.credentials is not None and self.metrics_endpoint is not None
        served = self.credentials.version
        while True:
            await asyncio.sleep(every)
            if self.credentials.version != served:
                served = self.credentials.version
                cert, key, _ = self._serving_files()
                self.metrics_endpoint.reload_tls(cert, key)

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
        if self.metrics_endpoint is not None:
            await self.metrics_endpoint.stop()
        for task in [*self._worker_tasks.values(), *self._tasks]:
            task.cancel()
        await asyncio.gather(*self._worker_tasks.values(), *self._tasks, return_exceptions=True)
        await self.recorder.stop()
        await self.client.close()
        await asyncio.to_thread(self.launcher.close)


def _ready_of(agent: Agent) -> tuple[bool, str]:
    return (True, "ok") if agent.ready.is_set() else (False, "listing this node's pods")


def default_node_name() -> str:
    """The host name, lower-cased (node names are DNS subdomains)."""
    return socket.gethostname().lower()
