"""Node lifecycle controller: notices agents that stopped renewing their Lease, marks their Node
Ready=Unknown and taints it ``node.navarch.io/unreachable:NoExecute`` (``not-ready`` for Ready=False), and
removes the taints when the node is healthy again. The taint eviction controller acts on the taints.

::

    every --node-monitor-period: each node ──> reconcile(node)
        Lease renewed within grace (observed locally) ──> Ready as the agent reports it
        silent for > --node-monitor-grace-period ──> all conditions Unknown (NodeStatusUnknown), NodeNotReady event
        Ready True ──> remove NoExecute taints;  Ready False/Unknown ──> add the taint, rate-limited per zone

Silence is measured on this process's monotonic clock from when it *saw* the Lease change (as
kube-controller-manager does), so clocks need not agree. Tainting is rate-limited per zone
(``topology.kubernetes.io/zone``): --node-eviction-rate normally; when more than --unhealthy-zone-threshold
of a zone (at least 3 nodes) is down, --secondary-node-eviction-rate, or nothing for a zone of at most
--large-cluster-size-threshold nodes; when every node of every zone is down the controller assumes its own
network is at fault, taints nothing and lifts the taints it set.
"""

from __future__ import annotations

import asyncio
import logging
from typing import ClassVar

from controlplane.api import conditions, namespaces
from controlplane.api.errors import NotFoundError
from controlplane.api.pb import coordination_pb2, core_pb2
from controlplane.api.placement import TAINT_NOT_READY, TAINT_UNREACHABLE
from controlplane.api.ratelimit import TokenBucket
from controlplane.client.events import NORMAL
from controlplane.controllers.base import Controller, ControllerContext, copy

log = logging.getLogger(__name__)

LEASE_NAMESPACE = namespaces.NODE_LEASE
UNREACHABLE = TAINT_UNREACHABLE
NOT_READY = TAINT_NOT_READY
ZONE_LABEL = "topology.kubernetes.io/zone"

NORMAL_ZONE, PARTIAL_DISRUPTION, FULL_DISRUPTION = "Normal", "PartialDisruption", "FullDisruption"


def ready_status(node: core_pb2.Node) -> str:
    """The node's Ready condition status ("Unknown" if it has none)."""
    return conditions.node_ready(node)


class NodeLifecycleController(Controller):
    """Marks silent nodes Unknown and taints unhealthy nodes NoExecute."""

    name: ClassVar[str] = "node-lifecycle"
    default_workers = 1  # one at a time: zone rate limits are decided in order

    def __init__(self, ctx: ControllerContext) -> None:
        super().__init__(ctx)
        self.nodes = ctx.informers.informer(core_pb2.Node)
        self.leases = ctx.informers.informer(coordination_pb2.Lease)
        self._seen: dict[str, tuple[str, float]] = {}  # node -> (renewTime, when we saw it change)
        self._buckets: dict[str, TokenBucket] = {}
        self._ready: dict[str, tuple[str, str]] = {}  # node -> (zone, Ready status), our own writes included
        self.zone_states: dict[str, str] = {}
        self.nodes.add_event_handler(self._node_changed, lambda old, new: self._node_changed(new), self._node_deleted)
        self.leases.add_event_handler(self._lease_changed, lambda old, new: self._lease_changed(new), None)

    def _node_changed(self, node: core_pb2.Node) -> None:
        self._ready[node.metadata.name] = (node.metadata.labels.get(ZONE_LABEL, ""), ready_status(node))
        self.enqueue(node)

    def _node_deleted(self, node: core_pb2.Node) -> None:
        self._seen.pop(node.metadata.name, None)
        self._ready.pop(node.metadata.name, None)

    def _lease_changed(self, lease: coordination_pb2.Lease) -> None:
        if lease.metadata.namespace != LEASE_NAMESPACE:
            return
        name = lease.metadata.name
        renew = lease.spec.renew_time.ToJsonString()
        if self._seen.get(name, ("", 0.0))[0] != renew:
            self._seen[name] = (renew, self.ctx.monotonic())
            self.queue.add(name)

    def _silent_for(self, node: core_pb2.Node) -> tuple[float, float]:
        """(seconds since the last observed heartbeat, the grace period that applies)."""
        seen = self._seen.get(node.metadata.name)
        if seen is None:  # never heard from since we started: count from now, with the startup grace
            self._seen[node.metadata.name] = ("", self.ctx.monotonic())
            return 0.0, self.config.node_startup_grace_period
        grace = self.config.node_monitor_grace_period if seen[0] else self.config.node_startup_grace_period
        return self.ctx.monotonic() - seen[1], grace

    async def background(self) -> None:
        """Every monitor period: recompute zone states and look at every node."""
        while True:
            self._update_zone_states()
            for node in self.nodes.store.objects():
                self.queue.add(node.metadata.name)
            await asyncio.sleep(self.config.node_monitor_period)

    def _update_zone_states(self) -> None:
        """Zone states from the latest Ready status of every node (what we wrote ourselves counts at once,
        before the cache shows it, so a burst of failures is judged on the full count)."""
        zones: dict[str, list[str]] = {}
        for zone, status in self._ready.values():
            zones.setdefault(zone, []).append(status)
        states: dict[str, str] = {}
        for zone, members in zones.items():
            down = sum(1 for status in members if status != "True")
            if members and down == len(members):
                states[zone] = FULL_DISRUPTION
            elif down > 2 and down / len(members) >= self.config.unhealthy_zone_threshold:
                states[zone] = PARTIAL_DISRUPTION
            else:
                states[zone] = NORMAL_ZONE
            rate = self.config.node_eviction_rate
            if states[zone] == PARTIAL_DISRUPTION:
                rate = (
                    self.config.secondary_node_eviction_rate
                    if len(members) > self.config.large_cluster_size_threshold
                    else 0.0
                )
            bucket = self._buckets.setdefault(zone, TokenBucket(rate, tokens=1.0, at=self.ctx.monotonic()))
            bucket.rate = rate
            if states.get(zone) != self.zone_states.get(zone):
                log.info("zone %r: %s (%d of %d nodes not ready)", zone or "<none>", states[zone], down, len(members))
        self.zone_states = states

    def _all_zones_down(self) -> bool:
        return bool(self.zone_states) and all(s == FULL_DISRUPTION for s in self.zone_states.values())

    async def reconcile(self, key: str) -> None:
        cached = self.nodes.store.get(key)
        if cached is None:
            return
        node = copy(cached)
        silent, grace = self._silent_for(node)
        if silent > grace and ready_status(node) != "Unknown":
            node = await self._mark_unknown(node, silent)
        elif silent <= grace:
            self.queue.add_after(key, grace - silent + 0.1)
        await self._sync_taints(node)

    async def _mark_unknown(self, node: core_pb2.Node, silent: float) -> core_pb2.Node:
        now = self.ctx.now().replace(microsecond=0)
        for c in node.status.conditions:
            if c.status != "Unknown":
                c.last_transition_time.FromDatetime(now)
            c.status = "Unknown"
            c.reason = "NodeStatusUnknown"
            c.message = f"navarch-agent stopped posting node status ({silent:.0f}s without a Lease renewal)."
        if not any(c.type == "Ready" for c in node.status.conditions):
            c = node.status.conditions.add(type="Ready", status="Unknown", reason="NodeStatusUnknown")
            c.last_transition_time.FromDatetime(now)
        updated = await self.client.update_status(node)
        self._ready[node.metadata.name] = (node.metadata.labels.get(ZONE_LABEL, ""), "Unknown")
        self.recorder.event(updated, NORMAL, "NodeNotReady", f"Node {node.metadata.name} status is now: NodeNotReady")
        return updated

    async def _sync_taints(self, node: core_pb2.Node) -> None:
        """NoSchedule taints follow the Ready condition at once (they only keep new pods away); NoExecute
        taints, which evict, are rate-limited per zone and withheld when every zone is down."""
        status = ready_status(node)
        key = {"False": NOT_READY, "Unknown": UNREACHABLE}.get(status)
        want_execute = None if self._all_zones_down() else key
        ours = {NOT_READY, UNREACHABLE}

        def have(effect: str) -> list[core_pb2.Taint]:
            return [t for t in node.spec.taints if t.key in ours and t.effect == effect]

        wanted = [key] if key else []
        schedule_ok = [t.key for t in have("NoSchedule")] == wanted
        execute_ok = [t.key for t in have("NoExecute")] == ([want_execute] if want_execute else [])
        if schedule_ok and execute_ok:
            return
        add_execute = want_execute is not None and not any(t.key == want_execute for t in have("NoExecute"))
        if add_execute:
            self._update_zone_states()
            zone = node.metadata.labels.get(ZONE_LABEL, "")
            bucket = self._buckets.setdefault(
                zone, TokenBucket(self.config.node_eviction_rate, tokens=1.0, at=self.ctx.monotonic())
            )
            wait = float("inf") if self._all_zones_down() else bucket.take(self.ctx.monotonic())
            if wait > 0:
                want_execute = None  # not yet: keep what is there (if anything), look again soon
                self.queue.add_after(node.metadata.name, min(wait, self.config.node_monitor_period))
                if schedule_ok:
                    return
        kept = [t for t in node.spec.taints if t.key not in ours]
        for effect, want in (("NoSchedule", key), ("NoExecute", want_execute)):
            if want is None:
                continue
            taint = next((t for t in have(effect) if t.key == want), None)
            if taint is None:
                taint = core_pb2.Taint(key=want, effect=effect)
                taint.time_added.FromDatetime(self.ctx.now().replace(microsecond=0))
            kept.append(taint)
        del node.spec.taints[:]
        node.spec.taints.extend(kept)
        try:
            await self.client.update(node)
        except NotFoundError:
            return
        if add_execute and want_execute is not None:
            self.recorder.event(
                node, NORMAL, "NodeTainted", f"Node {node.metadata.name} tainted {want_execute}:NoExecute"
            )
