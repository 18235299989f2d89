"""Label and field selectors with Kubernetes' syntax and semantics.

Label selectors: ``a=b``, ``a==b``, ``a!=b``, ``a in (x,y)``, ``a notin (x)``,
``a`` (exists) and ``!a`` (does not exist), joined by commas (AND).
Field selectors: ``field=value``, ``field==value``, ``field!=value`` over the
fields each kind supports (``metadata.name``, ``metadata.namespace`` always;
``spec.nodeName`` and ``status.phase`` for Pods).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from google.protobuf.message import Message

from controlplane.api import kinds
from controlplane.api.errors import InvalidError
from controlplane.api.objects import meta
from controlplane.api.pb import meta_pb2

_KEY = r"[A-Za-z0-9./_-]+"
_TERM_SET = re.compile(rf"^\s*({_KEY})\s+(in|notin)\s*\(([^()]*)\)\s*$")
_TERM_EQ = re.compile(rf"^\s*({_KEY})\s*(==|=|!=)\s*([A-Za-z0-9._-]*)\s*$")
_TERM_EXISTS = re.compile(rf"^\s*(!?)\s*({_KEY})\s*$")


@dataclass(frozen=True)
class Requirement:
    """One term of a label selector."""

    key: str
    operator: str  # "=", "!=", "in", "notin", "exists", "!"
    values: frozenset[str] = frozenset()

    def matches(self, labels: Mapping[str, str]) -> bool:
        """Whether a label set satisfies this term."""
        has = self.key in labels
        if self.operator == "exists":
            return has
        if self.operator == "!":
            return not has
        if self.operator in ("=", "in"):
            return has and labels[self.key] in self.values
        # "!=" and "notin" match objects that lack the key, as in Kubernetes.
        return not has or labels[self.key] not in self.values


@dataclass(frozen=True)
class LabelSelector:
    """A parsed label selector: all requirements must match."""

    requirements: tuple[Requirement, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        """Whether the labels satisfy every term (an empty selector matches all)."""
        return all(r.matches(labels) for r in self.requirements)

    @property
    def empty(self) -> bool:
        """True when the selector selects everything."""
        return not self.requirements


def _split_terms(text: str) -> list[str]:
    # Commas inside "(...)" belong to a set, not to the term list.
    terms: list[str] = []
    current: list[str] = []
    depth = 0
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            terms.append("".join(current))
            current = []
        else:
            current.append(ch)
    terms.append("".join(current))
    return terms


def parse_label_selector(text: str) -> LabelSelector:
    """Parse a label selector string; ``InvalidError`` naming the bad term otherwise."""
    if not text.strip():
        return LabelSelector()
    reqs: list[Requirement] = []
    for term in _split_terms(text):
        if m := _TERM_SET.match(term):
            values = frozenset(v.strip() for v in m.group(3).split(",") if v.strip())
            if not values:
                raise InvalidError(f"labelSelector: {term.strip()!r}: a set needs at least one value")
            reqs.append(Requirement(m.group(1), m.group(2), values))
        elif m := _TERM_EQ.match(term):
            op = "=" if m.group(2) in ("=", "==") else "!="
            reqs.append(Requirement(m.group(1), op, frozenset([m.group(3)])))
        elif m := _TERM_EXISTS.match(term):
            reqs.append(Requirement(m.group(2), "!" if m.group(1) else "exists"))
        else:
            raise InvalidError(
                f"labelSelector: cannot parse {term.strip()!r} (use k=v, k!=v, k in (a,b), k notin (a), k, !k)",
                field="labelSelector",
            )
    return LabelSelector(tuple(reqs))


def from_label_selector_message(sel: meta_pb2.LabelSelector) -> LabelSelector:
    """Convert a ``LabelSelector`` object (matchLabels, matchExpressions) to a matcher."""
    reqs = [Requirement(k, "=", frozenset([v])) for k, v in sorted(sel.match_labels.items())]
    ops = {"In": "in", "NotIn": "notin", "Exists": "exists", "DoesNotExist": "!"}
    for i, expr in enumerate(sel.match_expressions):
        if expr.operator not in ops:
            raise InvalidError(
                f"selector.matchExpressions[{i}].operator: {expr.operator!r} is not one of In, NotIn, Exists, "
                "DoesNotExist"
            )
        reqs.append(Requirement(expr.key, ops[expr.operator], frozenset(expr.values)))
    return LabelSelector(tuple(reqs))


FieldGetter = Callable[[Message], str]

_COMMON_FIELDS: dict[str, FieldGetter] = {
    "metadata.name": lambda o: meta(o).name,
    "metadata.namespace": lambda o: meta(o).namespace,
}
_KIND_FIELDS: dict[str, dict[str, FieldGetter]] = {
    "Pod": {
        "spec.nodeName": lambda o: o.spec.node_name,  # type: ignore[attr-defined]
        "status.phase": lambda o: o.status.phase,  # type: ignore[attr-defined]
    },
    "Node": {"spec.unschedulable": lambda o: "true" if o.spec.unschedulable else "false"},  # type: ignore[attr-defined]
    "Event": {
        "involvedObject.kind": lambda o: o.involved_object.kind,  # type: ignore[attr-defined]
        "involvedObject.name": lambda o: o.involved_object.name,  # type: ignore[attr-defined]
        "involvedObject.uid": lambda o: o.involved_object.uid,  # type: ignore[attr-defined]
        "reason": lambda o: o.reason,  # type: ignore[attr-defined]
    },
    "Secret": {"type": lambda o: o.type},  # type: ignore[attr-defined]
}


@dataclass(frozen=True)
class FieldRequirement:
    """One term of a field selector."""

    field: str
    equal: bool
    value: str
    getter: FieldGetter


@dataclass(frozen=True)
class FieldSelector:
    """A parsed field selector over one kind."""

    requirements: tuple[FieldRequirement, ...] = ()

    def matches(self, obj: Message) -> bool:
        """Whether the object satisfies every term."""
        return all((r.getter(obj) == r.value) == r.equal for r in self.requirements)

    def exact(self, field: str) -> str | None:
        """The value required by an ``field=value`` term, if there is one (used for indexing)."""
        for r in self.requirements:
            if r.field == field and r.equal:
                return r.value
        return None


def supported_fields(kind: str) -> list[str]:
    """Field selector paths the kind supports."""
    return sorted([*_COMMON_FIELDS, *_KIND_FIELDS.get(kind, {})])


def parse_field_selector(text: str, kind: kinds.KindInfo) -> FieldSelector:
    """Parse a field selector for a kind; unknown fields are refused with the supported list."""
    if not text.strip():
        return FieldSelector()
    fields = {**_COMMON_FIELDS, **_KIND_FIELDS.get(kind.kind, {})}
    reqs: list[FieldRequirement] = []
    for term in text.split(","):
        m = re.match(r"^\s*([A-Za-z0-9_.]+)\s*(==|=|!=)\s*(.*?)\s*$", term)
        if not m:
            raise InvalidError(f"fieldSelector: cannot parse {term.strip()!r} (use field=value or field!=value)")
        field = m.group(1)
        if field not in fields:
            raise InvalidError(
                f"fieldSelector: {field!r} is not a supported field selector for {kind.plural}; "
                f"supported: {', '.join(supported_fields(kind.kind))}",
                field="fieldSelector",
            )
        reqs.append(FieldRequirement(field, m.group(2) != "!=", m.group(3), fields[field]))
    return FieldSelector(tuple(reqs))
