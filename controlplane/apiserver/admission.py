"""Admission: default tolerations (applied to new pods after defaulting, before validation), and the steps
run after validation — the priority of new pods, and whatever the server chains beside it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping

from google.protobuf.message import Message

from controlplane.api import namespaces
from controlplane.api.errors import ForbiddenError, NotFoundError
from controlplane.api.objects import describe
from controlplane.api.pb import core_pb2, scheduling_pb2
from controlplane.api.placement import TAINT_NOT_READY, TAINT_UNREACHABLE
from controlplane.api.validation import SYSTEM_PRIORITY_CLASSES
from controlplane.apiserver.watchcache import Filter, WatchCache


def add_default_tolerations(pod: core_pb2.Pod, *, not_ready_seconds: int, unreachable_seconds: int) -> None:
    """Give a pod limited tolerations of the not-ready/unreachable NoExecute taints unless it has its own
    (Kubernetes' DefaultTolerationSeconds): it is evicted from a failed node after that long, not at once."""
    for key, seconds in ((TAINT_NOT_READY, not_ready_seconds), (TAINT_UNREACHABLE, unreachable_seconds)):
        covered = any(
            (t.key == key or (not t.key and t.operator == "Exists")) and t.effect in ("", "NoExecute")
            for t in pod.spec.tolerations
        )
        if not covered:
            pod.spec.tolerations.add(key=key, operator="Exists", effect="NoExecute", toleration_seconds=seconds)


SYSTEM_NAMESPACE = namespaces.SYSTEM


class PriorityAdmission:
    """Resolves a new pod's priority from its PriorityClass, as Kubernetes' Priority admission plugin.

    ``spec.priorityClassName`` names the class (unknown: PERMISSION_DENIED); without one the cluster's
    ``globalDefault`` class applies (none: priority 0). ``spec.priority`` and ``spec.preemptionPolicy`` are
    then the class's; a pod that sets either to something else is refused, so no pod can claim a priority
    its author was not given a class for."""

    def __init__(
        self, caches: Mapping[str, WatchCache], fetch: Callable[[str], Awaitable[Message]] | None = None
    ) -> None:
        self.caches = caches
        self.fetch = fetch
        """Reads a class from etcd when the cache does not have it (it may lag a class created a moment ago);
        the cache alone answers the common case, so a pod's Create costs no extra read."""

    async def _named(
        self, classes: list[scheduling_pb2.PriorityClass], name: str
    ) -> scheduling_pb2.PriorityClass | None:
        found = next((c for c in classes if c.metadata.name == name), None)
        if found is not None or self.fetch is None:
            return found
        try:
            fetched = await self.fetch(name)
        except NotFoundError:
            return None
        return fetched if isinstance(fetched, scheduling_pb2.PriorityClass) else None

    async def __call__(self, obj: Message, old: Message | None = None) -> None:
        if old is not None or not isinstance(obj, core_pb2.Pod):
            return
        cache = self.caches["PriorityClass"]
        classes = [c for c in cache.list(Filter(), ordered=False) if isinstance(c, scheduling_pb2.PriorityClass)]
        spec = obj.spec
        chosen: scheduling_pb2.PriorityClass | None = None
        if spec.priority_class_name:
            chosen = await self._named(classes, spec.priority_class_name)
            if chosen is None:
                raise ForbiddenError(
                    f'{describe(obj)}: spec.priorityClassName: no PriorityClass with name "{spec.priority_class_name}" '
                    "was found"
                )
        else:
            defaults = [c for c in classes if c.global_default]
            chosen = max(defaults, key=lambda c: c.value) if defaults else None
        system = chosen is not None and chosen.metadata.name in SYSTEM_PRIORITY_CLASSES
        if system and obj.metadata.namespace != SYSTEM_NAMESPACE:
            # As Kubernetes keeps them to kube-system: otherwise any namespace editor could preempt anything.
            raise ForbiddenError(
                f"{describe(obj)}: spec.priorityClassName: {spec.priority_class_name} is reserved for pods in the "
                f"{SYSTEM_NAMESPACE} namespace"
            )
        value = chosen.value if chosen is not None else 0
        policy = (chosen.preemption_policy if chosen is not None else "") or "PreemptLowerPriority"
        if spec.HasField("priority") and spec.priority != value:
            raise ForbiddenError(
                f"{describe(obj)}: spec.priority: the integer value of priority ({spec.priority}) must not be "
                f"provided in pod spec; priority admission computed {value} from the given PriorityClass name"
            )
        if spec.HasField("preemption_policy") and spec.preemption_policy != policy:
            raise ForbiddenError(
                f"{describe(obj)}: spec.preemptionPolicy: {spec.preemption_policy!r} must not be provided in pod "
                f"spec; priority admission computed {policy!r} from the given PriorityClass name"
            )
        spec.priority = value
        spec.preemption_policy = policy
        if chosen is not None:
            spec.priority_class_name = chosen.metadata.name


class AdmissionChain:
    """Admission steps applied in order after validation (on create, ``old`` is None)."""

    def __init__(self, *steps: Callable[[Message, Message | None], Awaitable[None]]) -> None:
        self.steps = steps

    async def __call__(self, obj: Message, old: Message | None = None) -> None:
        for step in self.steps:
            await step(obj, old)
