"""The scheduler: informers feed the cache and the queue; one loop decides, bindings are written concurrently.

::

    Pod informer ──unscheduled, ours──> SchedulingQueue ──pop──> Algorithm.decide(cache snapshot)
         │ bound pods                                               │ node          │ none
         v                                                          v               v
    SchedulerCache <──────── assume ─────────────────────────── bind task    condition + Event,
    Node informer ──> cache (+ queue.move_all)                  (Update guarded   park the pod
                                                                by resourceVersion)

No node fits a pod: ``preemption.find`` looks for lower-priority pods to evict; the scheduler deletes them
(a ``Preempted`` Event on each), writes the node into the pod's ``status.nominatedNodeName``, and holds the
room there for it: pods of lower priority are scheduled as if the nominated pod were already on that node.
A pod whose earlier victims are still terminating waits for them instead of choosing more.

Bindings go out in batches (``BatchBinder``: one ``BindPods`` call per batch, one etcd transaction). Each
binding names the uid and resourceVersion the scheduler saw while ``spec.nodeName`` was empty, and the API
server binds only an unassigned pod, so a pod is never bound twice even when two replicas race. A failed
binding forgets the assumption and requeues.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time

from controlplane.api.errors import ApiError, ConflictError
from controlplane.api.pb import api_pb2, core_pb2, meta_pb2, policy_pb2
from controlplane.api.volumes import SELECTED_NODE
from controlplane.client.client import ApiClient
from controlplane.client.events import NORMAL, WARNING, EventRecorder
from controlplane.client.informer import Informer
from controlplane.scheduler import metrics, preemption
from controlplane.scheduler.algorithm import Algorithm, Decision
from controlplane.scheduler.binder import BatchBinder
from controlplane.scheduler.cache import SchedulerCache, counts
from controlplane.scheduler.config import SchedulerConfig
from controlplane.scheduler.framework import NodeInfo, Snapshot
from controlplane.scheduler.queue import QueuedPod, SchedulingQueue

log = logging.getLogger(__name__)

VOLUME_BINDING_TIMEOUT = 30.0
"""Seconds a pod's new local volumes may take to be provisioned before the pod is tried again."""

RATE_WINDOW = 60.0
"""Seconds over which Status reports attempts and bindings per second."""


class Rate:
    """Events per second over a sliding window."""

    def __init__(self, window: float = RATE_WINDOW) -> None:
        self.window = window
        self.total = 0
        self._times: collections.deque[float] = collections.deque()

    def record(self, n: int = 1) -> None:
        """Count ``n`` events now."""
        now = time.monotonic()
        self.total += n
        self._times.extend([now] * n)

    def per_second(self) -> float:
        """Events per second over the window (or since the first event, if more recent)."""
        now = time.monotonic()
        while self._times and self._times[0] < now - self.window:
            self._times.popleft()
        if not self._times:
            return 0.0
        return len(self._times) / max(1.0, min(self.window, now - self._times[0]))


class Scheduler:
    """Assigns unscheduled pods (of this scheduler's name) to nodes."""

    def __init__(self, client: ApiClient, config: SchedulerConfig, identity: str) -> None:
        self.client = client
        self.config = config
        self.identity = identity
        self.algorithm = Algorithm(config)
        self.cache = SchedulerCache()
        self.queue = SchedulingQueue(
            backoff_initial=config.backoff_initial,
            backoff_max=config.backoff_max,
            retry=config.unschedulable_retry,
        )
        metrics.QUEUES.track(self, self.queue.lengths)
        self.recorder = EventRecorder(
            client, "navarch-scheduler", identity, rate=config.event_qps, burst=config.event_burst
        )
        self.pods: Informer[core_pb2.Pod] = Informer(client, core_pb2.Pod)
        self.nodes: Informer[core_pb2.Node] = Informer(client, core_pb2.Node)
        self.budgets: Informer[policy_pb2.PodDisruptionBudget] = Informer(client, policy_pb2.PodDisruptionBudget)
        self.claims: Informer[core_pb2.PersistentVolumeClaim] = Informer(client, core_pb2.PersistentVolumeClaim)
        self.volumes: Informer[core_pb2.PersistentVolume] = Informer(client, core_pb2.PersistentVolume)
        for inf in (self.claims, self.volumes):
            inf.add_event_handler(self._storage_changed, lambda old, new: self._storage_changed(new), None)
        self.nominated: dict[str, tuple[str, core_pb2.Pod]] = {}
        """Pods that preempted (uid -> (node, pod)): the room on that node is held for them."""
        self.preemptions = 0
        self.attempts = Rate()
        self.bindings = Rate()
        self._binds: set[asyncio.Task[None]] = set()
        self.binder: BatchBinder[QueuedPod] = BatchBinder(
            client,
            self._bound,
            batch_size=config.bind_batch_size,
            concurrency=config.bind_concurrency,
            timeout=config.bind_timeout,
        )
        self.pods.add_event_handler(self._pod_added, self._pod_updated, self._pod_deleted)
        self.nodes.add_event_handler(self._node_changed, lambda old, new: self._node_changed(new), self._node_deleted)

    # ---------------------------------------------------------- handlers

    def _responsible(self, pod: core_pb2.Pod) -> bool:
        return (
            not pod.spec.node_name
            and (pod.spec.scheduler_name or "default-scheduler") == self.config.scheduler_name
            and not pod.metadata.HasField("deletion_timestamp")
            and pod.status.phase not in ("Succeeded", "Failed")
        )

    def _pod_added(self, pod: core_pb2.Pod) -> None:
        if pod.spec.node_name:
            self.cache.set_pod(pod)
        elif self._responsible(pod):
            self.queue.add(pod)

    def _pod_updated(self, old: core_pb2.Pod, new: core_pb2.Pod) -> None:
        if new.spec.node_name:
            self.queue.delete(new.metadata.uid)
            self.cache.set_pod(new)
            if counts(old) and not counts(new):
                self.queue.move_all()  # it finished: its resources are free
        elif self._responsible(new):
            self.queue.add(new)
        else:
            self.queue.delete(new.metadata.uid)

    def _pod_deleted(self, pod: core_pb2.Pod) -> None:
        self.queue.delete(pod.metadata.uid)
        self.nominated.pop(pod.metadata.uid, None)
        if self.cache.node_of(pod.metadata.uid) is not None:
            self.cache.remove_pod(pod.metadata.uid)
            self.queue.move_all()

    def _storage_changed(self, _: object) -> None:
        self.queue.move_all()  # a claim bound or a volume freed may make a parked pod schedulable

    def _node_changed(self, node: core_pb2.Node) -> None:
        self.cache.set_node(node)
        self.queue.move_all()

    def _node_deleted(self, node: core_pb2.Node) -> None:
        self.cache.remove_node(node.metadata.name)

    # --------------------------------------------------------------- run

    async def run_informers(self) -> None:
        """Keep the caches current (runs whether or not this replica leads)."""
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self.nodes.run(), name="scheduler-node-informer")
            tg.create_task(self.pods.run(), name="scheduler-pod-informer")
            tg.create_task(self.budgets.run(), name="scheduler-budget-informer")
            tg.create_task(self.claims.run(), name="scheduler-claim-informer")
            tg.create_task(self.volumes.run(), name="scheduler-volume-informer")

    async def schedule_forever(self) -> None:
        """Leader's work: pop, decide, assume, bind — until cancelled."""
        self.recorder.start()
        await self.nodes.wait_for_sync(60)
        await self.pods.wait_for_sync(60)
        await self.budgets.wait_for_sync(60)
        await self.claims.wait_for_sync(60)
        await self.volumes.wait_for_sync(60)
        # A new leader reads the pods afresh, so bindings written by a deposed leader are all counted.
        fresh = await self.client.list(core_pb2.Pod)
        for pod in fresh.items:
            if pod.spec.node_name:
                self.cache.set_pod(pod)
        log.info("scheduling as %s (%d nodes)", self.config.scheduler_name, len(self.cache.nodes))
        binder = asyncio.create_task(self.binder.run(), name="scheduler-binder")
        try:
            while True:
                qp = await self.queue.pop()
                if qp is not None:
                    self.schedule_one(qp)
                    if self.attempts.total % 64 == 0:
                        await asyncio.sleep(0)  # let bindings and informers run between bursts
        finally:
            binder.cancel()
            for task in list(self._binds):
                task.cancel()
            await asyncio.gather(binder, *self._binds, return_exceptions=True)
            await self.recorder.stop()

    def schedule_one(self, qp: QueuedPod) -> None:
        """One cycle for one pod (synchronous: the cache cannot change under it)."""
        self.attempts.record()
        pod = qp.pod
        snapshot = self._snapshot_for(pod)
        decision = self.algorithm.decide(snapshot, pod)
        if decision.node is None:
            metrics.ATTEMPTS.labels("unschedulable", self.config.scheduler_name).inc()
            self._try_preemption(qp, snapshot, decision)
            self._unschedulable(qp, decision)
            return
        self.nominated.pop(pod.metadata.uid, None)
        self.cache.assume(pod, decision.node)
        self.queue.done(qp)
        m = pod.metadata
        binding = api_pb2.PodBinding(
            namespace=m.namespace, name=m.name, uid=m.uid, resource_version=m.resource_version, node_name=decision.node
        )
        unbound = self._unbound_local_claims(pod)
        if unbound:
            task = asyncio.create_task(self._bind_after_volumes(qp, binding, unbound))
            self._binds.add(task)
            task.add_done_callback(self._binds.discard)
            return
        self.binder.submit(qp, binding)

    def _unbound_local_claims(self, pod: core_pb2.Pod) -> list[str]:
        names = []
        for v in pod.spec.volumes:
            if not v.HasField("persistent_volume_claim"):
                continue
            claim = self.claims.store.get(f"{pod.metadata.namespace}/{v.persistent_volume_claim.claim_name}")
            if claim is not None and not claim.spec.volume_name:
                names.append(claim.metadata.name)
        return names

    async def _bind_after_volumes(self, qp: QueuedPod, binding: api_pb2.PodBinding, claims: list[str]) -> None:
        """Kubernetes' PreBind for delayed volume binding: the chosen node goes into each unbound claim
        (``volume.kubernetes.io/selected-node``), the volume controller provisions and binds there, and only
        then is the pod bound — so a pod never lands on a node its volume will not be on."""
        ns, node = binding.namespace, binding.node_name
        try:
            for name in claims:
                for _ in range(3):
                    claim = await self.client.get(core_pb2.PersistentVolumeClaim, name, ns)
                    chosen = claim.metadata.annotations.get(SELECTED_NODE, "")
                    if claim.spec.volume_name or chosen == node:
                        break
                    if chosen:
                        raise ConflictError(f"claim {ns}/{name} was chosen for node {chosen}")
                    claim.metadata.annotations[SELECTED_NODE] = node
                    try:
                        await self.client.update(claim)
                        break
                    except ConflictError:
                        continue
            deadline = time.monotonic() + VOLUME_BINDING_TIMEOUT
            delay = 0.05
            while True:
                pending = [n for n in claims if not self._claim_bound(ns, n)]
                if not pending:
                    break
                if time.monotonic() > deadline:
                    raise TimeoutError(f"claims {', '.join(pending)} not bound within {VOLUME_BINDING_TIMEOUT:.0f}s")
                await asyncio.sleep(delay)
                delay = min(delay * 2, 1.0)
        except (ApiError, TimeoutError) as err:
            log.warning("pod %s/%s: volumes on %s: %s", ns, binding.name, node, getattr(err, "message", err))
            self.cache.forget(qp.pod.metadata.uid)
            self.queue.requeue(qp)
            return
        self.binder.submit(qp, binding)

    def _claim_bound(self, namespace: str, name: str) -> bool:
        claim = self.claims.store.get(f"{namespace}/{name}")
        return claim is not None and bool(claim.spec.volume_name) and claim.status.phase == "Bound"

    def _bound(self, qp: QueuedPod, binding: api_pb2.PodBinding, result: api_pb2.BindingResult) -> None:
        """The outcome of one binding (called by the binder)."""
        pod, node = qp.pod, binding.node_name
        if result.code != "OK":
            metrics.ATTEMPTS.labels("error", self.config.scheduler_name).inc()
            self.cache.forget(pod.metadata.uid)
            if result.code not in ("ABORTED", "NOT_FOUND"):
                log.warning(
                    "binding %s/%s to %s failed: %s %s",
                    pod.metadata.namespace,
                    pod.metadata.name,
                    node,
                    result.code,
                    result.message,
                )
                self.queue.requeue(qp)
                return
            # Changed, deleted, or bound by another replica meanwhile: retry with what the informer has now.
            latest = self.pods.store.get_by_name(pod.metadata.namespace, pod.metadata.name)
            if latest is not None and latest.metadata.uid == pod.metadata.uid and self._responsible(latest):
                qp.pod = latest
                self.queue.requeue(qp)
            return
        self.bindings.record()
        metrics.ATTEMPTS.labels("scheduled", self.config.scheduler_name).inc()
        metrics.POD_SCHEDULING_DURATION.observe(time.monotonic() - qp.added)
        self.recorder.event(
            pod, NORMAL, "Scheduled", f"Successfully assigned {pod.metadata.namespace}/{pod.metadata.name} to {node}"
        )
        if any(c.type == "PodScheduled" and c.status == "False" for c in pod.status.conditions):
            task = asyncio.create_task(self._set_condition(pod, "True", "", ""))
            self._binds.add(task)
            task.add_done_callback(self._binds.discard)

    def _snapshot_for(self, pod: core_pb2.Pod) -> Snapshot:
        """The cache's snapshot, with the room held for nominated pods at least as important as ``pod``."""
        snapshot = self.cache.snapshot()
        if any(v.HasField("persistent_volume_claim") for v in pod.spec.volumes):
            snapshot.claims = {f"{c.metadata.namespace}/{c.metadata.name}": c for c in self.claims.store.objects()}
            snapshot.volumes = {v.metadata.name: v for v in self.volumes.store.objects()}
        held = [
            (node, other)
            for uid, (node, other) in self.nominated.items()
            if uid != pod.metadata.uid and preemption.priority(other) >= preemption.priority(pod)
        ]
        if not held:
            return snapshot
        changed: dict[str, NodeInfo] = {}
        for node, other in held:
            info = changed.get(node) or (snapshot.by_name[node].clone() if node in snapshot.by_name else None)
            if info is None:
                continue
            info.add_pod(other)
            changed[node] = info
        nodes = [changed.get(n.name, n) for n in snapshot.nodes]
        return Snapshot(nodes, {n.name: n for n in nodes}, claims=snapshot.claims, volumes=snapshot.volumes)

    def _try_preemption(self, qp: QueuedPod, snapshot: Snapshot, decision: Decision) -> None:
        pod = qp.pod
        earlier = self.nominated.get(pod.metadata.uid)
        if earlier is not None:
            info = snapshot.by_name.get(earlier[0])
            if info is not None and any(
                p.metadata.HasField("deletion_timestamp") and preemption.priority(p) < preemption.priority(pod)
                for p in info.pods.values()
            ):
                return  # its victims are still going: wait for them rather than evict more
        rejections = {v.node: v.status.code for v in decision.verdicts}
        budgets = self.budgets.store.objects()
        candidate = preemption.find(
            snapshot, pod, rejections, lambda snap, node: self.algorithm.fits(snap, pod, node), budgets
        )
        if candidate is None:
            return
        self.preemptions += 1
        self.nominated[pod.metadata.uid] = (candidate.node, pod)
        task = asyncio.create_task(self._preempt(pod, candidate))
        self._binds.add(task)
        task.add_done_callback(self._binds.discard)

    async def _preempt(self, pod: core_pb2.Pod, candidate: preemption.Candidate) -> None:
        """Delete the victims (gracefully) and record the nomination on the preemptor."""
        m = pod.metadata
        for victim in candidate.victims:
            try:
                await self.client.delete(
                    core_pb2.Pod, victim.metadata.name, victim.metadata.namespace, uid=victim.metadata.uid
                )
                metrics.PREEMPTION_VICTIMS.inc()
                self.recorder.event(
                    victim,
                    NORMAL,
                    "Preempted",
                    f"Preempted by {m.namespace}/{m.name} on node {candidate.node}",
                )
            except ApiError as err:
                log.info("preempting %s/%s: %s", victim.metadata.namespace, victim.metadata.name, err.message)
        for _ in range(3):
            try:
                live = await self.client.get(core_pb2.Pod, m.name, m.namespace)
                if live.metadata.uid != m.uid or live.spec.node_name:
                    return
                if live.status.nominated_node_name == candidate.node:
                    return
                live.status.nominated_node_name = candidate.node
                await self.client.update_status(live)
                return
            except ConflictError:
                continue
            except ApiError as err:
                log.warning("pod %s: nominatedNodeName: %s", m.name, err.message)
                return

    def _unschedulable(self, qp: QueuedPod, decision: Decision) -> None:
        message = decision.message(len(self.cache.nodes)) if self.cache.nodes else "0/0 nodes are available."
        self.queue.unschedulable(qp)
        if message == qp.last_message:
            return  # already reported: no write, no Event for an unchanged reason
        qp.last_message = message
        self.recorder.event(qp.pod, WARNING, "FailedScheduling", message)
        task = asyncio.create_task(self._set_condition(qp.pod, "False", "Unschedulable", message))
        self._binds.add(task)
        task.add_done_callback(self._binds.discard)

    async def _set_condition(self, pod: core_pb2.Pod, status: str, reason: str, message: str) -> None:
        """Write the PodScheduled condition (status subresource; a conflict retries with the latest pod)."""
        for _ in range(3):
            try:
                live = await self.client.get(core_pb2.Pod, pod.metadata.name, pod.metadata.namespace)
                if live.metadata.uid != pod.metadata.uid:
                    return
                keep = [c for c in live.status.conditions if c.type != "PodScheduled"]
                cond = meta_pb2.Condition(type="PodScheduled", status=status, reason=reason, message=message)
                cond.last_transition_time.GetCurrentTime()
                cond.last_transition_time.nanos = 0
                del live.status.conditions[:]
                live.status.conditions.extend([*keep, cond])
                if status == "False" and not live.status.phase:
                    live.status.phase = "Pending"
                await self.client.update_status(live)
                return
            except ConflictError:
                continue
            except ApiError as err:
                log.warning("pod %s: PodScheduled condition: %s", pod.metadata.name, err.message)
                return
