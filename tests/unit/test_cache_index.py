"""The watch cache's index answers exactly what a scan of every object would, whatever puts and removes
came before (the oracle is a plain dict filtered and sorted in full)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from controlplane.api import kinds
from controlplane.api.pb import core_pb2
from controlplane.api.selectors import parse_field_selector, parse_label_selector
from controlplane.apiserver.cacheindex import ObjectIndex
from controlplane.apiserver.watchcache import Filter
from controlplane.storage.keys import object_key

POD = kinds.lookup("Pod")
NAMESPACES = ["a", "b", "c"]
NODES = ["", "n1", "n2"]
NAMES = ["p0", "p1", "p2", "p3"]


def pod(namespace: str, name: str, node: str, app: str) -> core_pb2.Pod:
    p = core_pb2.Pod()
    p.metadata.namespace, p.metadata.name = namespace, name
    p.metadata.labels["app"] = app
    p.spec.node_name = node
    return p


put = st.tuples(
    st.just("put"), st.sampled_from(NAMESPACES), st.sampled_from(NAMES), st.sampled_from(NODES), st.sampled_from("xy")
)
remove = st.tuples(st.just("remove"), st.sampled_from(NAMESPACES), st.sampled_from(NAMES), st.just(""), st.just(""))
field_terms = st.sampled_from(
    ["", "spec.nodeName=n1", "spec.nodeName=", "spec.nodeName!=n2", "metadata.name=p1", "metadata.namespace=b",
     "metadata.name=p2,spec.nodeName=n2", "status.phase=Running"]
)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(
    ops=st.lists(st.one_of(put, remove), max_size=40),
    namespace=st.sampled_from(["", *NAMESPACES]),
    fields=field_terms,
    labels=st.sampled_from(["", "app=x", "app!=x"]),
)
def test_select_equals_a_full_scan(
    ops: list[tuple[str, str, str, str, str]], namespace: str, fields: str, labels: str
) -> None:
    index = ObjectIndex(POD)
    oracle: dict[str, core_pb2.Pod] = {}
    for op, ns, name, node, app in ops:
        key = object_key(POD, ns, name)
        if op == "put":
            obj = pod(ns, name, node, app)
            index.put(key, obj)
            oracle[key] = obj
        else:
            index.remove(key)
            oracle.pop(key, None)
    flt = Filter(namespace=namespace, labels=parse_label_selector(labels), fields=parse_field_selector(fields, POD))
    expected = [(k, o) for k, o in sorted(oracle.items()) if flt.matches(o)]
    assert index.select(flt) == expected
    assert sorted(index.select(flt, ordered=False)) == sorted(expected, key=lambda pair: pair[0])
    assert len(index) == len(oracle)


def test_a_namespaced_or_node_scoped_query_reads_only_its_bucket() -> None:
    index = ObjectIndex(POD)
    for i in range(1000):
        index.put(object_key(POD, "big", f"p{i}"), pod("big", f"p{i}", f"n{i % 100}", "x"))
    for i in range(3):
        index.put(object_key(POD, "small", f"p{i}"), pod("small", f"p{i}", "n7", "x"))
    assert len(index.candidates(Filter(namespace="small"))) == 3
    on_n7 = Filter(fields=parse_field_selector("spec.nodeName=n7", POD))
    assert len(index.candidates(on_n7)) == 13  # 10 in "big", 3 in "small"
    one = Filter(namespace="big", fields=parse_field_selector("metadata.name=p5", POD))
    assert list(index.candidates(one)) == [object_key(POD, "big", "p5")]
    # A pod moving to another node leaves its old bucket.
    index.put(object_key(POD, "small", "p0"), pod("small", "p0", "n8", "x"))
    assert len(index.candidates(on_n7)) == 12
