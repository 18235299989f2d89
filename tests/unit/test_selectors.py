import pytest

from controlplane.api import kinds
from controlplane.api.errors import InvalidError
from controlplane.api.pb import core_pb2
from controlplane.api.selectors import parse_field_selector, parse_label_selector

LABELS = {"app": "web", "tier": "front", "env": "prod"}


@pytest.mark.parametrize(
    ("selector", "matches"),
    [
        ("", True),
        ("app=web", True),
        ("app==web", True),
        ("app=db", False),
        ("app!=db", True),
        ("missing!=x", True),  # != matches objects without the key, as in Kubernetes
        ("app in (web, db)", True),
        ("app in (db)", False),
        ("app notin (db)", True),
        ("app notin (web)", False),
        ("missing notin (x)", True),
        ("tier", True),
        ("missing", False),
        ("!missing", True),
        ("!tier", False),
        ("app=web,tier=front", True),
        ("app=web,tier=back", False),
        ("app in (web,db),!missing,env", True),
    ],
)
def test_label_selector_semantics(selector: str, matches: bool) -> None:
    assert parse_label_selector(selector).matches(LABELS) is matches


@pytest.mark.parametrize("selector", ["app=", "=web", "app in ()", "a b", "app in web", "app=(x)"])
def test_malformed_label_selectors_are_refused(selector: str) -> None:
    if selector == "app=":
        # An empty value is legal: app= selects objects whose label is empty.
        assert parse_label_selector(selector).matches({"app": ""})
        return
    with pytest.raises(InvalidError, match="labelSelector"):
        parse_label_selector(selector)


def _pod(node: str, phase: str) -> core_pb2.Pod:
    p = core_pb2.Pod()
    p.metadata.name, p.metadata.namespace = "web", "default"
    p.spec.node_name, p.status.phase = node, phase
    return p


@pytest.mark.parametrize(
    ("selector", "matches"),
    [
        ("spec.nodeName=n1", True),
        ("spec.nodeName==n1", True),
        ("spec.nodeName!=n1", False),
        ("spec.nodeName=", False),
        ("status.phase=Running,metadata.namespace=default", True),
        ("metadata.name=web,status.phase!=Running", False),
    ],
)
def test_field_selector_semantics(selector: str, matches: bool) -> None:
    sel = parse_field_selector(selector, kinds.lookup("pods"))
    assert sel.matches(_pod("n1", "Running")) is matches


def test_unknown_field_selector_names_the_supported_fields() -> None:
    with pytest.raises(InvalidError, match=r"'spec.foo' is not a supported field selector for pods.*spec.nodeName"):
        parse_field_selector("spec.foo=x", kinds.lookup("pods"))
    with pytest.raises(InvalidError, match="not a supported field selector for configmaps"):
        parse_field_selector("spec.nodeName=x", kinds.lookup("cm"))
