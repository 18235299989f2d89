"""Every user string the API server parses is parsed in steps linear in its length, up to a size limit.

The steps are counted from outside the parser: ``sys.settrace`` counts the Python lines it executes and
``sys.setprofile`` records every C function it calls. A C function's work is invisible to the line count, so
the parser may call only C functions known to be linear in their input (string methods, ``len``, container
constructors); a regular expression — whose backtracking is where the old parser spent 11 s on 2,000 spaces —
fails the test as soon as it is called. No wall clock is involved.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import controlplane
from controlplane.api import kinds
from controlplane.api.errors import ApiError, InvalidError
from controlplane.api.selectors import MAX_SELECTOR_LENGTH, parse_field_selector, parse_label_selector

# Python lines per input character: the scanner's inner loops run ~2 lines per character and a term costs ~40
# lines but takes at least two characters ("x,"), so 25 per character plus a constant bounds a linear parse;
# a quadratic one at the size limit would need thousands per character.
LINES_PER_CHAR = 25
LINES_CONSTANT = 400

PARSER_ROOT = str(Path(controlplane.__file__).parent)
LINEAR_C_FUNCTIONS = {
    "len", "isinstance", "startswith", "find", "split", "strip", "lstrip", "rstrip", "join", "add", "append",
    "get", "items", "sorted", "frozenset", "set", "tuple", "list", "next", "repr", "__init_subclass__",
    "__new__", "__init__", "__build_class__", "getattr", "setattr", "__setattr__", "lower", "setprofile",
}  # fmt: skip


class StepCount:
    """Lines executed and C functions called while a parse ran."""

    def __init__(self) -> None:
        self.lines = 0
        self.c_calls: set[str] = set()

    def trace(self, frame: FrameType, event: str, arg: Any) -> Callable[..., Any]:
        if event == "line":
            self.lines += 1
        return self.trace

    def profile(self, frame: FrameType, event: str, arg: Any) -> None:
        # C calls made by Navarch's code (and the dataclass code it generates); the test harness's own
        # bookkeeping (hypothesis times its examples) is not the parser's.
        if event == "c_call" and (
            frame.f_code.co_filename.startswith(PARSER_ROOT) or frame.f_code.co_filename == "<string>"
        ):
            self.c_calls.add(getattr(arg, "__name__", repr(arg)))


@contextmanager
def counting() -> Iterator[StepCount]:
    steps = StepCount()
    sys.settrace(steps.trace)
    sys.setprofile(steps.profile)
    try:
        yield steps
    finally:
        sys.setprofile(None)
        sys.settrace(None)


def parse_counted(parse: Callable[[str], object], text: str) -> StepCount:
    with counting() as steps:
        try:
            parse(text)
        except InvalidError:
            pass  # refusing is a fine answer; taking long to refuse is not
        except ApiError as err:  # pragma: no cover - any other error class would be a bug
            raise AssertionError(f"unexpected {type(err).__name__}: {err}") from None
    return steps


def assert_linear(parse: Callable[[str], object], text: str) -> None:
    steps = parse_counted(parse, text)
    budget = LINES_PER_CHAR * len(text) + LINES_CONSTANT
    assert steps.lines <= budget, f"{steps.lines} lines for {len(text)} characters (budget {budget})"
    unknown = steps.c_calls - LINEAR_C_FUNCTIONS
    assert not unknown, f"the parser called C functions whose cost is not counted: {sorted(unknown)}"


def label(text: str) -> object:
    return parse_label_selector(text)


def field(text: str) -> object:
    return parse_field_selector(text, kinds.lookup("pods"))


# The characters that matter to a selector's grammar, so random text reaches deep into the parser.
ALPHABET = " \t\n,=!()in notab.-/_x9"
# Whole valid terms make long inputs that get far; random fragments find the corners.
VALID_TERMS = ["a=b,", "!a,", "a,", "a in (x, y),", "a notin (x),", "a!=b,", " ", "x,", "metadata.name=x,", "a==,"]
fragment = st.one_of(
    st.sampled_from(VALID_TERMS),
    st.lists(st.sampled_from(VALID_TERMS), min_size=2, max_size=4).map("".join),
    st.text(alphabet=ALPHABET, min_size=1, max_size=12),
)


def repeated_to_the_limit(prefix: str, body: str, suffix: str) -> str:
    """A prefix, a fragment repeated up to the size limit, a suffix: repetition is what backtracking hates."""
    room = MAX_SELECTOR_LENGTH - len(prefix) - len(suffix)
    return prefix + (body * (room // len(body) + 1))[:room] + suffix


@pytest.mark.parametrize("parse", [label, field], ids=["label", "field"])
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    prefix=st.sampled_from(["", "metadata.name=", "a", "!", "a in (", "a=", "spec.nodeName!="]),
    body=fragment,
    suffix=st.sampled_from(["", "x\ny", "!", ")", ",", "(", "=="]),
)
def test_adversarial_selectors_at_the_size_limit_parse_in_linear_steps(
    parse: Callable[[str], object], prefix: str, body: str, suffix: str
) -> None:
    text = repeated_to_the_limit(prefix, body, suffix)  # built here so a failure prints the recipe, not 32 KiB
    assert len(text) == MAX_SELECTOR_LENGTH
    assert_linear(parse, text)


@pytest.mark.parametrize("parse", [label, field], ids=["label", "field"])
@settings(max_examples=300, deadline=None)
@given(text=st.text(alphabet=st.one_of(st.sampled_from(ALPHABET), st.characters()), max_size=400))
def test_random_selectors_parse_in_linear_steps(parse: Callable[[str], object], text: str) -> None:
    assert_linear(parse, text)


@pytest.mark.parametrize(
    "text",
    [
        "metadata.name=" + " " * 2000 + "x\ny",  # the reported field selector (11 s before)
        " " * 4000 + "!",
        "a" * 4000 + " b",
        "!" + " " * 4000 + "a=b",
        "a in (" + "x," * 2000,
        "a in (" + " " * 4000,
    ],
)
def test_the_reported_inputs_parse_in_linear_steps(text: str) -> None:
    assert_linear(label, text)
    assert_linear(field, text)


def test_a_selector_over_the_limit_is_refused_naming_the_limit() -> None:
    long = "app=" + "x" * MAX_SELECTOR_LENGTH
    with pytest.raises(InvalidError, match=rf"labelSelector: {len(long)} characters .* limit of {MAX_SELECTOR_LENGTH}"):
        parse_label_selector(long)
    with pytest.raises(InvalidError, match=rf"fieldSelector: .* limit of {MAX_SELECTOR_LENGTH}"):
        parse_field_selector("metadata.name=" + "x" * MAX_SELECTOR_LENGTH, kinds.lookup("pods"))
    # At the limit it is still parsed.
    at_limit = "app=" + "x" * (MAX_SELECTOR_LENGTH - 4)
    assert parse_label_selector(at_limit).matches({"app": "x" * (MAX_SELECTOR_LENGTH - 4)})
