"""Label and field selectors with Kubernetes' syntax and semantics.

Label selectors: ``a=b``, ``a==b``, ``a!=b``, ``a in (x,y)``, ``a notin (x)``,
``a`` (exists) and ``!a`` (does not exist), joined by commas (AND).
Field selectors: ``field=value``, ``field==value``, ``field!=value`` over the
fields each kind supports (``metadata.name``, ``metadata.namespace`` always;
``spec.nodeName`` and ``status.phase`` for Pods).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from google.protobuf.message import Message

from controlplane.api import kinds
from controlplane.api.errors import InvalidError
from controlplane.api.objects import meta
from controlplane.api.pb import meta_pb2

MAX_SELECTOR_LENGTH = 32 * 1024
"""The longest label or field selector accepted (characters). Parsing is linear in the length: a scanner
that reads each character a bounded number of times, no regular expressions (a backtracking pattern was cubic
on ``metadata.name=`` + spaces + a newline, and the request deadline cannot interrupt the event loop)."""

_KEY_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789./_-")
_VALUE_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-")
_FIELD_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.")
_SPACE = frozenset(" \t\n\r\f\v")
_LABEL_USAGE = "use k=v, k!=v, k in (a,b), k notin (a), k, !k"


def _check_length(what: str, text: str) -> None:
    if len(text) > MAX_SELECTOR_LENGTH:
        raise InvalidError(
            f"{what}: {len(text)} characters is longer than the limit of {MAX_SELECTOR_LENGTH}; "
            "select with fewer terms (or labels that group the objects)",
            field=what,
        )


def _shown(text: str) -> str:
    """A bad term as an error message shows it: trimmed and at most 80 characters."""
    text = text.strip()
    return repr(text if len(text) <= 80 else text[:77] + "...")


class _Scanner:
    """A cursor over a selector string; every method advances or stays, so a parse reads each character a
    bounded number of times."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def at_end(self) -> bool:
        return self.pos >= len(self.text)

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def skip_space(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos] in _SPACE:
            self.pos += 1

    def take(self, chars: frozenset[str]) -> str:
        """The longest run of ``chars`` at the cursor (possibly empty)."""
        start = self.pos
        while self.pos < len(self.text) and self.text[self.pos] in chars:
            self.pos += 1
        return self.text[start : self.pos]

    def accept(self, literal: str) -> bool:
        """Consume ``literal`` if the text continues with it."""
        if self.text.startswith(literal, self.pos):
            self.pos += len(literal)
            return True
        return False

    def rest_of_term(self, start: int) -> str:
        """The text of the term that began at ``start``, up to the next comma (for error messages)."""
        comma = self.text.find(",", self.pos)
        return self.text[start : len(self.text) if comma < 0 else comma]


def _parse_label_term(sc: _Scanner) -> Requirement:
    start = sc.pos
    sc.skip_space()
    negated = sc.accept("!")
    sc.skip_space()
    key = sc.take(_KEY_CHARS)
    if not key:
        raise InvalidError(f"labelSelector: cannot parse {_shown(sc.rest_of_term(start))} ({_LABEL_USAGE})")
    gap = sc.pos
    sc.skip_space()
    spaced = sc.pos > gap
    if sc.at_end() or sc.peek() == ",":
        return Requirement(key, "!" if negated else "exists")
    if not negated:
        for literal, op in (("==", "="), ("!=", "!="), ("=", "=")):
            if sc.accept(literal):
                sc.skip_space()
                return Requirement(key, op, frozenset([sc.take(_VALUE_CHARS)]))
        word = sc.take(_KEY_CHARS) if spaced else ""
        if word in ("in", "notin"):
            sc.skip_space()
            if sc.accept("("):
                values: set[str] = set()
                while True:
                    sc.skip_space()
                    value = sc.take(_VALUE_CHARS)
                    if value:
                        values.add(value)
                    sc.skip_space()
                    if sc.accept(")"):
                        if not values:
                            raise InvalidError(
                                f"labelSelector: {_shown(sc.text[start : sc.pos])}: a set needs at least one value",
                                field="labelSelector",
                            )
                        return Requirement(key, word, frozenset(values))
                    if not sc.accept(","):
                        break
    raise InvalidError(
        f"labelSelector: cannot parse {_shown(sc.rest_of_term(start))} ({_LABEL_USAGE})", field="labelSelector"
    )


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


def parse_label_selector(text: str) -> LabelSelector:
    """Parse a label selector string (at most ``MAX_SELECTOR_LENGTH`` characters, linear time);
    ``InvalidError`` naming the bad term otherwise."""
    _check_length("labelSelector", text)
    if not text.strip():
        return LabelSelector()
    sc = _Scanner(text)
    reqs: list[Requirement] = []
    while True:
        term_start = sc.pos
        reqs.append(_parse_label_term(sc))
        sc.skip_space()
        if sc.at_end():
            return LabelSelector(tuple(reqs))
        if not sc.accept(","):
            raise InvalidError(
                f"labelSelector: cannot parse {_shown(sc.rest_of_term(term_start))} ({_LABEL_USAGE})",
                field="labelSelector",
            )


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


_INDEXED_FIELDS: dict[str, tuple[str, ...]] = {
    "Pod": ("spec.nodeName",),  # every agent lists and watches its own pods
    "Event": ("involvedObject.uid",),  # describe shows one object's events
}


def indexed_fields(kind: str) -> dict[str, FieldGetter]:
    """The field selectors a cache keeps an index for, with their getters (namespace and name are always
    indexed by the key itself)."""
    fields = _KIND_FIELDS.get(kind, {})
    return {name: fields[name] for name in _INDEXED_FIELDS.get(kind, ())}


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
    """Parse a field selector for a kind (at most ``MAX_SELECTOR_LENGTH`` characters, linear time); unknown
    fields are refused with the supported list."""
    _check_length("fieldSelector", text)
    if not text.strip():
        return FieldSelector()
    fields = {**_COMMON_FIELDS, **_KIND_FIELDS.get(kind.kind, {})}
    reqs: list[FieldRequirement] = []
    for term in text.split(","):
        sc = _Scanner(term)
        sc.skip_space()
        field = sc.take(_FIELD_CHARS)
        sc.skip_space()
        op = next((lit for lit in ("==", "!=", "=") if sc.accept(lit)), "")
        if not field or not op:
            raise InvalidError(
                f"fieldSelector: cannot parse {_shown(term)} (use field=value or field!=value)", field="fieldSelector"
            )
        if field not in fields:
            raise InvalidError(
                f"fieldSelector: {field!r} is not a supported field selector for {kind.plural}; "
                f"supported: {', '.join(supported_fields(kind.kind))}",
                field="fieldSelector",
            )
        reqs.append(FieldRequirement(field, op != "!=", term[sc.pos :].strip(), fields[field]))
    return FieldSelector(tuple(reqs))


def selector_text(sel: meta_pb2.LabelSelector) -> str:
    """A LabelSelector object as selector text (``app=web,tier in (a,b),!legacy``); "" selects everything."""
    parts = [f"{k}={v}" for k, v in sorted(sel.match_labels.items())]
    for e in sel.match_expressions:
        op = {"In": "in", "NotIn": "notin"}.get(e.operator)
        if op:
            parts.append(f"{e.key} {op} ({','.join(e.values)})")
        else:
            parts.append(e.key if e.operator == "Exists" else f"!{e.key}")
    return ",".join(parts)
