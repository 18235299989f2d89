"""The Pod status as a pure function (nodeagent/pod/status.py): conditions from the containers, and
transition times that move only when a condition's status changes (plausible bugs: Ready when only some
containers are ready; Initialized before the init containers finished; every write restamping the
transition times)."""

from __future__ import annotations

from datetime import UTC, datetime

from controlplane.api.pb import core_pb2, meta_pb2
from nodeagent.pod.status import PodView, pod_status


def view(ready: dict[str, bool], *, init_done: bool = True, init: tuple[str, ...] = (), **kw: object) -> PodView:
    containers = {n: core_pb2.ContainerStatus(name=n, ready=r) for n, r in ready.items()}
    for n in init:
        containers[n] = core_pb2.ContainerStatus(name=n)
    base: dict[str, object] = {
        "phase": "Running",
        "reason": "",
        "message": "",
        "node_ip": "10.0.0.5",
        "qos_class": "BestEffort",
        "enforcement": "none",
        "start_time": None,
        "init_names": list(init),
        "main_names": list(ready),
        "containers": containers,
        "init_done": init_done,
        "previous_conditions": [],
        "now": datetime(2026, 12, 1, 12, 0, 0, 500_000, tzinfo=UTC),
    }
    base.update(kw)
    return PodView(**base)  # type: ignore[arg-type]


def conditions(status: core_pb2.PodStatus) -> dict[str, str]:
    return {c.type: c.status for c in status.conditions}


def test_ready_only_when_every_main_container_is() -> None:
    assert conditions(pod_status(view({"a": True, "b": False})))["Ready"] == "False"
    assert conditions(pod_status(view({"a": True, "b": True})))["Ready"] == "True"
    assert conditions(pod_status(view({})))["Ready"] == "False", "a pod without containers is never ready"


def test_initialized_waits_for_the_init_containers() -> None:
    got = conditions(pod_status(view({"a": False}, init=("setup",), init_done=False)))
    assert got == {"PodScheduled": "True", "Initialized": "False", "ContainersReady": "False", "Ready": "False"}
    assert conditions(pod_status(view({"a": False}, init=("setup",), init_done=True)))["Initialized"] == "True"


def test_status_carries_the_node_ip_and_container_order() -> None:
    s = pod_status(view({"b": True, "a": True}, init=("setup",)))
    assert (s.pod_ip, s.host_ip, [i.ip for i in s.pod_ips]) == ("10.0.0.5", "10.0.0.5", ["10.0.0.5"])
    assert [c.name for c in s.container_statuses] == ["b", "a"]
    assert [c.name for c in s.init_container_statuses] == ["setup"]


def test_transition_times_move_only_on_change() -> None:
    then = meta_pb2.Condition(type="Ready", status="False")
    then.last_transition_time.seconds = 42
    kept = pod_status(view({"a": False}, previous_conditions=[then]))
    (ready,) = [c for c in kept.conditions if c.type == "Ready"]
    assert ready.last_transition_time.seconds == 42 and ready.reason == "ContainersNotReady"
    moved = pod_status(view({"a": True}, previous_conditions=[then]))
    (ready,) = [c for c in moved.conditions if c.type == "Ready"]
    assert ready.last_transition_time.seconds == int(datetime(2026, 12, 1, 12, tzinfo=UTC).timestamp())
    assert ready.last_transition_time.nanos == 0
