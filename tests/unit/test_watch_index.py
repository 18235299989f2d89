"""Watch dispatch by index: an event is offered to every watcher that selects it (old or new object) and,
with one watcher per node, to no other node's watcher. The oracle is the brute-force scan: every watcher's
own filter applied to every event."""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import given, settings
from hypothesis import strategies as st

from controlplane.api import kinds
from controlplane.api.pb import core_pb2
from controlplane.api.selectors import parse_field_selector, parse_label_selector
from controlplane.apiserver.watchcache import Filter
from controlplane.apiserver.watchindex import WatcherIndex

POD = kinds.lookup("Pod")


@dataclass(eq=False)
class Watcher:
    filter: Filter


def pod(namespace: str, name: str, node: str, app: str = "x") -> core_pb2.Pod:
    p = core_pb2.Pod()
    p.metadata.namespace, p.metadata.name, p.spec.node_name = namespace, name, node
    p.metadata.labels["app"] = app
    return p


def selects(w: Watcher, obj: core_pb2.Pod | None) -> bool:
    return obj is not None and w.filter.matches(obj)


filters = st.builds(
    lambda ns, fields, labels: Filter(
        namespace=ns, labels=parse_label_selector(labels), fields=parse_field_selector(fields, POD)
    ),
    st.sampled_from(["", "a", "b"]),
    st.sampled_from(
        [
            "",
            "spec.nodeName=n1",
            "spec.nodeName=n2",
            "spec.nodeName!=n1",
            "metadata.name=p1",
            "metadata.namespace=b",
            "metadata.name=p1,spec.nodeName=n2",
            "spec.nodeName=",
        ]
    ),
    st.sampled_from(["", "app=x", "app=y"]),
)
pods = st.builds(
    pod,
    st.sampled_from(["a", "b"]),
    st.sampled_from(["p1", "p2"]),
    st.sampled_from(["", "n1", "n2"]),
    st.sampled_from(["x", "y"]),
)


@settings(max_examples=400, deadline=None)
@given(watch_filters=st.lists(filters, max_size=12), obj=pods, prev=st.one_of(st.none(), pods))
def test_the_index_never_misses_a_watcher_that_selects_the_event(
    watch_filters: list[Filter], obj: core_pb2.Pod, prev: core_pb2.Pod | None
) -> None:
    index: WatcherIndex[Watcher] = WatcherIndex(POD)
    watchers = [Watcher(f) for f in watch_filters]
    for w in watchers:
        index.add(w)
    offered = set(index.interested(obj, prev))
    for w in watchers:
        if selects(w, obj) or selects(w, prev):
            assert w in offered, f"{w.filter} selects the event but was not offered it"


def test_one_watcher_per_node_sees_only_its_node_and_a_moved_pod_reaches_both_nodes() -> None:
    index: WatcherIndex[Watcher] = WatcherIndex(POD)
    per_node = {f"n{i}": Watcher(Filter(fields=parse_field_selector(f"spec.nodeName=n{i}", POD))) for i in range(1000)}
    for w in per_node.values():
        index.add(w)
    everything, in_a = Watcher(Filter()), Watcher(Filter(namespace="a"))
    index.add(everything)
    index.add(in_a)
    assert set(index.interested(pod("a", "p", "n5"), None)) == {per_node["n5"], everything, in_a}
    # Moved from n1 to n2 (deleted and recreated elsewhere, or an update): both nodes' watchers hear it.
    moved = set(index.interested(pod("b", "p", "n2"), pod("b", "p", "n1")))
    assert moved == {per_node["n1"], per_node["n2"], everything}
    index.discard(per_node["n2"])
    assert per_node["n2"] not in index.interested(pod("b", "p", "n2"), None)
    assert len(index) == 1001
