"""``--limits-mode observe``: limits are not enforced, but a container whose working set goes over its memory
limit is reported as a Warning Event (``WouldOOMKill``) on its pod, once per container instance — so a node
can be moved to enforcement knowing what would have been killed (Nomad users were burned by limits that
appeared overnight, nomad#19588).

``over_limit`` is pure (unit-tested); ``LimitsObserver`` keeps which instances were already reported.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from controlplane.api.pb import core_pb2
from controlplane.api.quantity import parse_quantity
from controlplane.client.events import WARNING
from nodeagent.usage import NodeUsage

Report = Callable[[core_pb2.Pod, str, str, str], None]
"""``(pod, type, reason, message)``: an EventRecorder's ``event``."""


@dataclass(frozen=True)
class Overrun:
    """A container over its memory limit in one sample."""

    pod_uid: str
    container: str
    working_set: int
    limit: int


def over_limit(sample: NodeUsage, pods: Mapping[str, core_pb2.Pod]) -> list[Overrun]:
    """The containers of ``sample`` whose working set exceeds their spec's memory limit."""
    out = []
    for pu in sample.pods:
        pod = pods.get(pu.uid)
        if pod is None:
            continue
        limits = {c.name: c.resources.limits.get("memory") for c in [*pod.spec.init_containers, *pod.spec.containers]}
        for c in pu.containers:
            text = limits.get(c.name)
            if text and c.memory_working_set_bytes > int(parse_quantity(text)):
                out.append(Overrun(pu.uid, c.name, c.memory_working_set_bytes, int(parse_quantity(text))))
    return out


class LimitsObserver:
    """Reports would-be OOM kills after each usage sample, each container instance once."""

    def __init__(self, report: Report, instance_of: Callable[[str, str], int]) -> None:
        self.report = report
        self.instance_of = instance_of
        """``(pod uid, container)`` → the running instance (restart count), so a restarted container is new."""
        self._reported: set[tuple[str, str, int]] = set()

    def check(self, sample: NodeUsage, pods: Iterable[core_pb2.Pod]) -> None:
        by_uid = {p.metadata.uid: p for p in pods}
        for o in over_limit(sample, by_uid):
            key = (o.pod_uid, o.container, self.instance_of(o.pod_uid, o.container))
            if key in self._reported:
                continue
            self._reported.add(key)
            mib = 1024 * 1024
            self.report(
                by_uid[o.pod_uid],
                WARNING,
                "WouldOOMKill",
                f"container {o.container} uses {o.working_set // mib}Mi, over its memory limit "
                f"{o.limit // mib}Mi: it would have been OOM-killed (limits are observed, not enforced, on this node)",
            )
        live = {p.metadata.uid for p in by_uid.values()}
        self._reported = {k for k in self._reported if k[0] in live}
