"""StatefulSet arithmetic: names, ordinals, the revision a pod gets, and what a rolling update takes next."""

from __future__ import annotations

from controlplane.controllers.statefulsetutil import (
    Member,
    claim_name,
    condemned,
    next_to_update,
    ordinal_of,
    pod_name,
    revision_for,
)


def test_names_and_ordinals_round_trip_and_refuse_lookalikes() -> None:
    assert pod_name("web", 2) == "web-2" and claim_name("data", "web", 2) == "data-web-2"
    assert ordinal_of("web", "web-2") == 2 and ordinal_of("web", "web-10") == 10
    for other in ("web-02", "web-x", "web2", "webs-1", "web-1-x", "web--1", "web-9999999999"):
        assert ordinal_of("web", other) is None


def test_partition_keeps_low_ordinals_at_the_current_revision() -> None:
    assert revision_for(0, 2, True, "cur", "upd") == "cur"
    assert revision_for(2, 2, True, "cur", "upd") == "upd"
    assert revision_for(0, 2, False, "cur", "upd") == "upd"  # OnDelete: recreated pods are updated


def test_a_rolling_update_goes_from_the_highest_ordinal_one_unavailable_at_a_time() -> None:
    members = {i: Member(i, "cur", True) for i in range(3)}
    assert next_to_update(members, 3, 0, "upd", 1) == [2]
    members[2] = Member(2, "upd", False)  # updated, not Ready yet: nothing else goes
    assert next_to_update(members, 3, 0, "upd", 1) == []
    members[2] = Member(2, "upd", True)
    assert next_to_update(members, 3, 0, "upd", 1) == [1]
    assert next_to_update(members, 3, 2, "upd", 1) == []  # partition 2: only ordinal 2 is updated
    assert next_to_update({i: Member(i, "cur", True) for i in range(4)}, 4, 0, "upd", 2) == [3, 2]


def test_an_unready_pod_holds_the_update_within_max_unavailable() -> None:
    members = {0: Member(0, "cur", True), 1: Member(1, "cur", False), 2: Member(2, "cur", True)}
    assert next_to_update(members, 3, 0, "upd", 1) == []  # one is down already: the budget is spent
    assert next_to_update(members, 3, 0, "upd", 2) == [2, 1]  # room for one more; the down one costs nothing


def test_scale_down_takes_the_highest_ordinals_first() -> None:
    assert condemned([0, 1, 2, 3, 4], 2) == [4, 3, 2]
