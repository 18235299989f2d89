"""Options shared by several commands."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

from cli.context import options

F = TypeVar("F", bound=Callable[..., Any])


def _set_namespace(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value:
        options().namespace = value
    return value


def namespace_option(fn: F) -> F:
    """``-n/--namespace`` on a subcommand (kubectl accepts it after the verb)."""
    return click.option(
        "-n",
        "--namespace",
        default=None,
        expose_value=False,
        callback=_set_namespace,
        is_eager=True,
        help="The namespace (default: the context's, else default).",
    )(fn)
