"""PriorityClasses and the priority admission of pods, on a real API server: a pod gets its class's value
and preemption policy, an unknown class or a self-chosen priority is refused, the global default applies to
pods that name no class, and the built-in system classes exist."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from controlplane.api.errors import ForbiddenError, InvalidError
from controlplane.api.objects import from_manifest
from controlplane.api.pb import core_pb2, scheduling_pb2
from controlplane.apiserver.main import ApiServer
from controlplane.client.client import ApiClient, ClientConfig


@pytest.fixture
async def client(apiserver: ApiServer) -> AsyncIterator[ApiClient]:
    async with ApiClient(ClientConfig(endpoints=[f"127.0.0.1:{apiserver.port}"], timeout=10)) as c:
        yield c


def priority_class(name: str, value: int, **fields: Any) -> scheduling_pb2.PriorityClass:
    doc = {"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass", "metadata": {"name": name}, "value": value}
    return from_manifest({**doc, **fields})  # type: ignore[return-value]


def pod(name: str, namespace: str, **spec: Any) -> core_pb2.Pod:
    return from_manifest(  # type: ignore[return-value]
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"containers": [{"name": "c", "command": ["true"]}], **spec},
        }
    )


async def test_pods_get_their_class_priority_and_may_not_choose_their_own(client: ApiClient, namespace: str) -> None:
    high = f"high-{uuid.uuid4().hex[:6]}"
    await client.create(priority_class(high, 1000, preemptionPolicy="Never", description="batch that waits"))
    made = await client.create(pod("a", namespace, priorityClassName=high))
    assert (made.spec.priority, made.spec.preemption_policy) == (1000, "Never")
    plain = await client.create(pod("b", namespace))
    assert plain.spec.priority == 0 and plain.spec.preemption_policy == "PreemptLowerPriority"
    with pytest.raises(ForbiddenError, match="no PriorityClass with name"):
        await client.create(pod("c", namespace, priorityClassName="no-such-class"))
    with pytest.raises(ForbiddenError, match="must not be provided"):
        await client.create(pod("d", namespace, priority=999_999))
    with pytest.raises(ForbiddenError, match="preemptionPolicy"):
        await client.create(pod("e", namespace, priorityClassName=high, preemptionPolicy="PreemptLowerPriority"))
    stored = await client.get(scheduling_pb2.PriorityClass, high)
    stored.value = 5
    with pytest.raises(InvalidError, match="value: field is immutable"):
        await client.update(stored)
    await client.delete(scheduling_pb2.PriorityClass, high)


async def test_the_global_default_applies_and_only_one_may_exist(client: ApiClient, namespace: str) -> None:
    default = f"default-{uuid.uuid4().hex[:6]}"
    await client.create(priority_class(default, 7, globalDefault=True))
    try:
        made = await client.create(pod("f", namespace))
        assert (made.spec.priority, made.spec.priority_class_name) == (7, default)
        with pytest.raises(InvalidError, match="already the global default"):
            await client.create(priority_class(f"other-{uuid.uuid4().hex[:6]}", 8, globalDefault=True))
    finally:
        await client.delete(scheduling_pb2.PriorityClass, default)


async def test_system_classes_are_built_in_and_their_names_reserved(client: ApiClient, namespace: str) -> None:
    critical = await client.get(scheduling_pb2.PriorityClass, "system-node-critical")
    assert critical.value == 2_000_001_000
    with pytest.raises(ForbiddenError, match="reserved for pods in the navarch-system namespace"):
        await client.create(pod("g", namespace, priorityClassName="system-cluster-critical"))
    made = await client.create(
        pod(f"g-{uuid.uuid4().hex[:6]}", "navarch-system", priorityClassName="system-cluster-critical")
    )
    assert made.spec.priority == 2_000_000_000
    await client.delete(core_pb2.Pod, made.metadata.name, "navarch-system", grace_period_seconds=0)
    with pytest.raises(InvalidError, match="reserved"):
        await client.create(priority_class("system-mine", 10))
    with pytest.raises(InvalidError, match="no more than 1000000000"):
        await client.create(priority_class("too-high", 2_000_000_000))
