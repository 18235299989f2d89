"""The metrics API (metrics.k8s.io): NodeMetrics and PodMetrics, asked of the agents and kept in memory.

Each agent samples its node and containers every few seconds (``nodeagent/usage.py``); this server asks a
node's agent (``Agent.Usage``, over the channel it already keeps for logs and exec) only when a caller wants
that node's or its pods' figures, and keeps the answer ``RETENTION`` seconds, so ``navarch top`` and the
autoscaler cost each agent at most one call per ``RETENTION``, whichever API server they reach (every API
server can answer; nothing is written to etcd). Nodes are asked concurrently, ``MAX_CONCURRENT`` at a time,
each within ``AGENT_TIMEOUT``; a node that does not answer is named in ``unavailable`` and left out, as
metrics-server leaves out a kubelet it cannot scrape.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import grpc.aio

from controlplane.api import kinds
from controlplane.api.errors import ApiError, InvalidError
from controlplane.api.pb import core_pb2, metrics_pb2
from controlplane.api.selectors import parse_field_selector, parse_label_selector
from controlplane.apiserver.podproxy import PodProxy
from controlplane.apiserver.watchcache import Filter, WatchCache
from controlplane.storage.keys import object_key

RETENTION = 10.0
AGENT_TIMEOUT = 3.0
MAX_CONCURRENT = 64
_NODE = kinds.lookup("Node")
_POD = kinds.lookup("Pod")


@dataclass(frozen=True)
class _Report:
    report: metrics_pb2.UsageReport
    fetched: float


class ResourceMetrics:
    """Answers ListNodeMetrics and ListPodMetrics from the agents' latest samples."""

    def __init__(
        self, caches: dict[str, WatchCache], proxy: PodProxy, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.caches = caches
        self.proxy = proxy
        self.clock = clock
        self._reports: dict[str, _Report] = {}
        self._inflight: dict[str, asyncio.Future[metrics_pb2.UsageReport | None]] = {}
        self._slots = asyncio.Semaphore(MAX_CONCURRENT)

    async def list_nodes(self, request: metrics_pb2.NodeMetricsRequest) -> metrics_pb2.NodeMetricsList:
        """NodeMetrics of one node or of every node the selector picks."""
        nodes = self._nodes(request.name, request.label_selector)
        reports, unavailable = await self._gather(nodes)
        out = metrics_pb2.NodeMetricsList(unavailable=unavailable)
        for node in nodes:
            report = reports.get(node.metadata.name)
            if report is not None:
                item = out.items.add()
                item.CopyFrom(report.node)
                item.metadata.labels.update(node.metadata.labels)
        return out

    async def list_pods(self, request: metrics_pb2.PodMetricsRequest) -> metrics_pb2.PodMetricsList:
        """PodMetrics of one pod or of every pod (in a namespace, or all) the selector picks."""
        if request.name and not request.namespace:
            raise InvalidError("a pod's metrics need its namespace", field="namespace")
        try:
            labels = parse_label_selector(request.label_selector)
        except ValueError as err:
            raise InvalidError(str(err), field="label_selector") from None
        fields = parse_field_selector(f"metadata.name={request.name}", _POD) if request.name else None
        flt = Filter(namespace=request.namespace, labels=labels, **({"fields": fields} if fields else {}))
        pods = [p for p in self.caches["Pod"].list(flt, ordered=True) if isinstance(p, core_pb2.Pod)]
        wanted = {p.metadata.uid: p for p in pods if p.spec.node_name}
        node_names = sorted({p.spec.node_name for p in wanted.values()})
        nodes = [n for n in (self._node(name) for name in node_names) if n is not None]
        reports, unavailable = await self._gather(nodes)
        out = metrics_pb2.PodMetricsList(unavailable=unavailable)
        for report in reports.values():
            for pm in report.pods:
                pod = wanted.get(pm.metadata.uid)
                if pod is None:
                    continue
                item = out.items.add()
                item.CopyFrom(pm)
                item.metadata.labels.update(pod.metadata.labels)
        out.items.sort(key=lambda m: (m.metadata.namespace, m.metadata.name))
        return out

    def _node(self, name: str) -> core_pb2.Node | None:
        node = self.caches["Node"].get(object_key(_NODE, "", name))
        return node if isinstance(node, core_pb2.Node) else None

    def _nodes(self, name: str, selector: str) -> list[core_pb2.Node]:
        try:
            labels = parse_label_selector(selector)
        except ValueError as err:
            raise InvalidError(str(err), field="label_selector") from None
        if name:
            node = self._node(name)
            return [node] if node is not None and labels.matches(node.metadata.labels) else []
        return [n for n in self.caches["Node"].list(Filter(labels=labels)) if isinstance(n, core_pb2.Node)]

    async def _gather(self, nodes: Iterable[core_pb2.Node]) -> tuple[dict[str, metrics_pb2.UsageReport], list[str]]:
        listed = list(nodes)
        answers = await asyncio.gather(*(self._report(n) for n in listed))
        reports = {n.metadata.name: r for n, r in zip(listed, answers, strict=True) if r is not None}
        return reports, sorted(n.metadata.name for n, r in zip(listed, answers, strict=True) if r is None)

    async def _report(self, node: core_pb2.Node) -> metrics_pb2.UsageReport | None:
        name = node.metadata.name
        known = self._reports.get(name)
        if known is not None and self.clock() - known.fetched < RETENTION:
            return known.report
        pending = self._inflight.get(name)
        if pending is not None:  # another caller is asking this agent now: share its answer
            return await asyncio.shield(pending)
        future: asyncio.Future[metrics_pb2.UsageReport | None] = asyncio.get_running_loop().create_future()
        self._inflight[name] = future
        try:
            report = await self._ask(node)
            if report is not None:
                self._forget_stale()
                self._reports[name] = _Report(report, self.clock())
            future.set_result(report)
            return report
        except BaseException:
            future.set_result(None)
            raise
        finally:
            self._inflight.pop(name, None)

    async def _ask(self, node: core_pb2.Node) -> metrics_pb2.UsageReport | None:
        async with self._slots:
            try:
                stub = self.proxy.agent(node)
                report: metrics_pb2.UsageReport = await stub.Usage(metrics_pb2.UsageRequest(), timeout=AGENT_TIMEOUT)
            except (grpc.aio.AioRpcError, ApiError):  # unreachable, no sample yet, no endpoint: left out
                return None
            return report

    def _forget_stale(self) -> None:
        now = self.clock()
        for name in [n for n, r in self._reports.items() if now - r.fetched > 6 * RETENTION]:
            del self._reports[name]
