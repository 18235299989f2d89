"""--limits-mode observe: which containers are over their memory limit, reported once per instance."""

from __future__ import annotations

import pytest

from controlplane.api.objects import from_manifest
from controlplane.api.pb import core_pb2
from nodeagent.limitsobserver import LimitsObserver, over_limit
from nodeagent.usage import ContainerUsage, NodeUsage, PodUsage

pytestmark = pytest.mark.unit
MIB = 1024 * 1024


def pod(uid: str, limit: str | None) -> core_pb2.Pod:
    container = {"name": "main", "command": ["true"], **({"resources": {"limits": {"memory": limit}}} if limit else {})}
    p = from_manifest(
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": uid}, "spec": {"containers": [container]}}
    )
    assert isinstance(p, core_pb2.Pod)
    p.metadata.uid = uid
    return p


def sample(*usage: tuple[str, int]) -> NodeUsage:
    pods = [PodUsage("ns", uid, uid, [ContainerUsage("main", 0.1, ws, ws, "cgroup")]) for uid, ws in usage]
    return NodeUsage(0.0, 10.0, 0.1, 0, 0, 0, pods)


def test_only_containers_over_their_own_limit_are_named() -> None:
    pods = {"a": pod("a", "64Mi"), "b": pod("b", "1Gi"), "c": pod("c", None)}
    got = over_limit(sample(("a", 100 * MIB), ("b", 100 * MIB), ("c", 900 * MIB), ("gone", 900 * MIB)), pods)
    assert [(o.pod_uid, o.limit) for o in got] == [("a", 64 * MIB)]


def test_each_instance_is_reported_once_and_a_restart_counts_as_new() -> None:
    events: list[str] = []
    instance = {"a": 0}
    observer = LimitsObserver(lambda p, t, r, m: events.append(f"{p.metadata.uid}:{r}"), lambda uid, c: instance[uid])
    a = pod("a", "64Mi")
    for _ in range(3):
        observer.check(sample(("a", 100 * MIB)), [a])
    assert events == ["a:WouldOOMKill"]
    instance["a"] = 1
    observer.check(sample(("a", 100 * MIB)), [a])
    assert events == ["a:WouldOOMKill", "a:WouldOOMKill"]
