"""``--sort-by``: order objects by the value a JSONPath expression finds in each (kubectl's flag)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from google.protobuf.message import Message
from jsonpath_ng.exceptions import JsonPathParserError
from jsonpath_ng.ext.parser import parse as jsonpath_parse

from controlplane.api.errors import InvalidError
from controlplane.api.objects import typed_manifest

MAX_EXPRESSION = 256


def sort_key_expression(text: str) -> str:
    """``.spec.nodeName`` or ``{.spec.nodeName}`` as a JSONPath (``$.spec.nodeName``); raises for junk."""
    expr = text.strip()
    if len(expr) > MAX_EXPRESSION:
        raise InvalidError(f"--sort-by: longer than {MAX_EXPRESSION} characters")
    if expr.startswith("{") and expr.endswith("}"):
        expr = expr[1:-1].strip()
    if not expr.startswith((".", "[")):
        raise InvalidError(f"--sort-by {text!r}: use a JSONPath such as .metadata.name or {{.spec.nodeName}}")
    path = "$" + expr
    try:
        jsonpath_parse(path)
    except (JsonPathParserError, Exception) as err:  # the parser raises plain Exceptions too
        raise InvalidError(f"--sort-by {text!r}: {err}") from None
    return path


def _rank(value: Any) -> tuple[int, Any]:
    # Missing values first (as kubectl), then numbers by value, then everything else as text.
    if value is None:
        return (0, 0)
    if isinstance(value, bool):
        return (2, str(value).lower())
    if isinstance(value, int | float):
        return (1, value)
    return (2, value if isinstance(value, str) else str(value))


def sort_objects(objects: Sequence[Message], text: str) -> list[Message]:
    """The objects ordered by the first value the expression finds in each one's manifest (stable)."""
    parsed = jsonpath_parse(sort_key_expression(text))

    def key(obj: Message) -> tuple[int, Any]:
        found = parsed.find(typed_manifest(obj))
        return _rank(found[0].value if found else None)

    return sorted(objects, key=key)
