"""The Pod's status: a pure function from what the worker knows to ``PodStatus``, and the publisher that
writes it — once per change, coalesced (changes made while a write is in flight go out together in the
next one), never the same status twice; a new pod's first write waits (briefly) for its containers to
start, so that a quick start costs one write carrying Running rather than Pending, then Running."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from google.protobuf.timestamp_pb2 import Timestamp

from controlplane.api.errors import ApiError, NotFoundError
from controlplane.api.pb import core_pb2, meta_pb2
from controlplane.client.client import ApiClient

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PodView:
    """Everything the Pod's status is made of."""

    phase: str
    reason: str
    message: str
    node_ip: str
    qos_class: str
    enforcement: str
    start_time: Timestamp | None
    init_names: Sequence[str]
    main_names: Sequence[str]
    containers: Mapping[str, core_pb2.ContainerStatus]
    init_done: bool
    previous_conditions: Sequence[meta_pb2.Condition]
    now: datetime


def pod_status(v: PodView) -> core_pb2.PodStatus:
    """The PodStatus for ``v``: conditions PodScheduled, Initialized, ContainersReady, Ready, each keeping
    its lastTransitionTime while its status stays the same."""
    status = core_pb2.PodStatus(
        phase=v.phase,
        host_ip=v.node_ip,
        pod_ip=v.node_ip,
        qos_class=v.qos_class,
        resource_enforcement=v.enforcement,
        message=v.message,
        reason=v.reason,
    )
    status.pod_ips.add(ip=v.node_ip)
    if v.start_time is not None:
        status.start_time.CopyFrom(v.start_time)
    status.init_container_statuses.extend(v.containers[n] for n in v.init_names)
    status.container_statuses.extend(v.containers[n] for n in v.main_names)
    ready = bool(v.main_names) and all(v.containers[n].ready for n in v.main_names)
    initialized = v.init_done or not v.init_names
    previous = {c.type: c for c in v.previous_conditions}
    for kind, ok in (
        ("PodScheduled", True),
        ("Initialized", initialized),
        ("ContainersReady", ready),
        ("Ready", ready),
    ):
        cond = meta_pb2.Condition(type=kind, status="True" if ok else "False")
        old = previous.get(kind)
        if old is not None and old.status == cond.status:
            cond.last_transition_time.CopyFrom(old.last_transition_time)
        else:
            cond.last_transition_time.FromDatetime(v.now.replace(microsecond=0))
        if not ok and kind in ("ContainersReady", "Ready"):
            cond.reason = "ContainersNotReady"
        status.conditions.append(cond)
    return status


def start_settled(statuses: Sequence[core_pb2.ContainerStatus], main: Sequence[core_pb2.ContainerStatus]) -> bool:
    """Whether a pod's start has got somewhere worth reporting: every main container runs or ended, or a
    container waits for something other than being created (a configuration error, a back-off)."""
    if any(st.state.HasField("waiting") and st.state.waiting.reason != "ContainerCreating" for st in statuses):
        return True
    return bool(main) and all(st.state.HasField("running") or st.state.HasField("terminated") for st in main)


class StatusPublisher:
    """Writes a pod's status through UpdateStatus whenever it is marked dirty and has changed."""

    def __init__(
        self,
        client: ApiClient,
        pod: Callable[[], core_pb2.Pod],
        build: Callable[[], core_pb2.PodStatus],
        *,
        settled: Callable[[], bool] = lambda: True,
        first_write_hold: float = 0.0,
    ) -> None:
        self.client = client
        self._pod = pod
        self._build = build
        self._settled = settled
        self._hold = first_write_hold
        """The first write waits up to this long for ``settled()`` (a start that is done at once costs one write,
        carrying Running, instead of Pending then Running)."""
        self._dirty = asyncio.Event()
        self._written = asyncio.Event()
        self.last: core_pb2.PodStatus | None = None
        self.writes = 0

    def mark(self) -> None:
        """Something changed: write soon."""
        self._dirty.set()

    async def run(self) -> None:
        """Publish until cancelled, or until the pod is gone or replaced by one of the same name."""
        delay = 0.1
        if self._hold > 0:
            await self._dirty.wait()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._hold):
                    while not self._settled():
                        self._dirty.clear()
                        await self._dirty.wait()
            self._dirty.set()
        while True:
            await self._dirty.wait()
            self._dirty.clear()
            status = self._build()
            if status == self.last:
                continue
            current = self._pod()
            uid = current.metadata.uid
            pod = core_pb2.Pod(api_version="v1", kind="Pod")
            pod.metadata.name, pod.metadata.namespace = current.metadata.name, current.metadata.namespace
            pod.status.CopyFrom(status)
            try:
                out = await self.client.update_status(pod)
                if out.metadata.uid != uid:
                    return  # a new pod of the same name: this worker must not write its status
                self.last = status
                self.writes += 1
                current.status.CopyFrom(out.status)
                self._written.set()
                delay = 0.1
            except NotFoundError:
                return
            except ApiError as err:
                log.warning("pod %s: status: %s", current.metadata.name, err.message)
                self._dirty.set()
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def flushed(self, timeout: float) -> None:
        """Wait (at most ``timeout`` seconds) until the status as it is now has been written."""
        try:
            async with asyncio.timeout(timeout):
                while self.last != self._build():
                    self._written.clear()
                    self.mark()
                    await self._written.wait()
        except TimeoutError:
            return
