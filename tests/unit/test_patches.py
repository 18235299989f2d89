"""controlplane.api.patches: the three-way patch apply sends, applied with the merge patch the server runs."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from controlplane.api.patches import covers, merge_patch, three_way_patch

KEYS = st.sampled_from(["a", "b", "c", "d"])
SCALARS = st.one_of(st.integers(-3, 3), st.sampled_from(["x", "y", ""]), st.booleans())
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(KEYS, inner, max_size=3)),
    max_leaves=8,
)
DOCS = st.dictionaries(KEYS, VALUES, max_size=4)


@given(last=st.one_of(st.none(), DOCS), wanted=DOCS, live=DOCS)
def test_the_result_holds_everything_the_manifest_asks_for(
    last: dict[str, Any] | None, wanted: dict[str, Any], live: dict[str, Any]
) -> None:
    result = merge_patch(live, three_way_patch(last, wanted, live))
    assert covers(result, wanted), (result, wanted)


@given(last=DOCS, wanted=DOCS, live=DOCS)
def test_fields_the_last_apply_set_and_the_manifest_dropped_are_removed(
    last: dict[str, Any], wanted: dict[str, Any], live: dict[str, Any]
) -> None:
    result = merge_patch(live, three_way_patch(last, wanted, live))
    for key in set(last) - set(wanted):
        assert key not in result


@given(wanted=DOCS, live=DOCS, extra=SCALARS)
def test_fields_only_the_server_set_are_kept(wanted: dict[str, Any], live: dict[str, Any], extra: Any) -> None:
    live = {**live, "serverSide": extra}
    result = merge_patch(live, three_way_patch(wanted, wanted, live))
    assert result["serverSide"] == extra


@given(doc=DOCS)
def test_applying_the_same_manifest_twice_sends_nothing_the_second_time(doc: dict[str, Any]) -> None:
    once = merge_patch({}, three_way_patch(None, doc, {}))
    assert three_way_patch(doc, doc, once) == {}


def test_merge_patch_follows_rfc7386_examples() -> None:
    # RFC 7386 appendix A, a few of its cases.
    assert merge_patch({"a": "b"}, {"a": "c"}) == {"a": "c"}
    assert merge_patch({"a": "b"}, {"a": None}) == {}
    assert merge_patch({"a": [{"b": "c"}]}, {"a": [1]}) == {"a": [1]}
    assert merge_patch({"e": None}, {"a": 1}) == {"e": None, "a": 1}
    assert merge_patch([1, 2], {"a": "b", "c": None}) == {"a": "b"}
    assert merge_patch({"a": {"b": "c"}}, {"a": {"b": "d", "c": None}}) == {"a": {"b": "d"}}
