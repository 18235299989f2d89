"""Every waiting flag of the CLI takes a duration as kubectl's do (``--timeout 60s``, ``5m``, ``1h30m``; a
bare number is seconds): ``navarch rollout status deployment web --timeout 60s`` used to fail with "'60s' is
not a valid float" while the same flag with kubectl works."""

from __future__ import annotations

from collections.abc import Iterator

import click
import pytest

from cli.commands.common import DURATION
from cli.main import main

WAITING_FLAGS = {"--timeout", "--since", "--validity", "--ca-validity", "--ttl", "--deadline"}


def _options(group: click.Command, path: str = "navarch") -> Iterator[tuple[str, click.Option]]:
    for param in group.params:
        if isinstance(param, click.Option) and WAITING_FLAGS & set(param.opts):
            yield path, param
    if isinstance(group, click.Group):
        for name, sub in group.commands.items():
            yield from _options(sub, f"{path} {name}")


def test_every_waiting_flag_is_a_duration() -> None:
    found = list(_options(main))
    assert len(found) >= 8, found  # rollout status, delete, drain, up, down, logs --since, pki, token
    for path, option in found:
        assert option.type is DURATION, f"{path} {option.opts[0]} takes {option.type.name}, not a duration"


@pytest.mark.parametrize(
    ("text", "seconds"), [("60s", 60.0), ("0", 0.0), ("1m30s", 90.0), ("2.5", 2.5), ("250ms", 0.25)]
)
def test_durations_convert_to_seconds(text: str, seconds: float) -> None:
    assert DURATION.convert(text, None, None) == seconds


@pytest.mark.parametrize("text", ["-5s", "abc", "5 minutes", "nan", "1" * 100])
def test_bad_durations_are_one_clear_error(text: str) -> None:
    with pytest.raises(click.BadParameter):
        DURATION.convert(text, None, None)
