"""Shared condition helpers: one condition per type, transition times that mean "last changed"."""

from __future__ import annotations

import datetime

from controlplane.api.conditions import find, is_true, new_condition, node_ready, set_condition, status_of
from controlplane.api.pb import core_pb2, meta_pb2
from controlplane.controllers.podcontrol import CONTROLLER_REVISION_HASH, POD_TEMPLATE_HASH, template_hash

T0 = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
T1 = T0 + datetime.timedelta(minutes=5)


def test_set_condition_keeps_the_transition_time_while_the_status_holds() -> None:
    conds = set_condition([], new_condition("Available", "True", "Ok", now=T0))
    conds = set_condition(conds, new_condition("Progressing", "True", now=T0))
    again = set_condition(conds, new_condition("Available", "True", "StillOk", now=T1))
    available = find(again, "Available")
    assert available is not None and available.reason == "StillOk"
    assert available.last_transition_time.ToDatetime(datetime.UTC) == T0
    assert available.last_update_time.ToDatetime(datetime.UTC) == T1
    assert [c.type for c in again] == ["Progressing", "Available"]


def test_set_condition_moves_the_transition_time_when_the_status_changes() -> None:
    conds = set_condition([], new_condition("Ready", "True", now=T0))
    changed = set_condition(conds, new_condition("Ready", "False", now=T1))
    assert len(changed) == 1
    assert changed[0].last_transition_time.ToDatetime(datetime.UTC) == T1


def test_missing_conditions_read_as_unknown() -> None:
    node = core_pb2.Node()
    assert node_ready(node) == "Unknown"
    node.status.conditions.append(meta_pb2.Condition(type="Ready", status="False"))
    assert node_ready(node) == "False"
    assert status_of(node.status.conditions, "MemoryPressure") == "Unknown"
    assert not is_true(node.status.conditions, "Ready")


def test_template_hash_ignores_its_own_label_and_changes_with_the_template() -> None:
    t = core_pb2.PodTemplateSpec()
    t.spec.containers.add(name="c", command=["sleep"])
    h = template_hash(t)
    t.metadata.labels[POD_TEMPLATE_HASH] = h
    assert template_hash(t) == h
    assert template_hash(t, label=CONTROLLER_REVISION_HASH) != h  # this label is part of the template there
    assert template_hash(t, 1) != h
    t.spec.containers[0].command.append("1")
    assert template_hash(t) != h
