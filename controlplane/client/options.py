"""Flags written once: a component's flags are the fields of one frozen dataclass, each field carrying its
flag's declaration; ``click_options`` turns the dataclass into click options and ``from_params`` turns
click's parsed values back into the dataclass. The component then derives its configuration from that one
object (and refuses bad combinations there, with one line naming the flag).

::

    @dataclass(frozen=True)
    class SchedulerFlags:
        leader_elect: bool = flag(default=False, help="...", is_flag=True)

    @click.command()
    @click_options(SchedulerFlags)
    def main(**params): flags = from_params(SchedulerFlags, params)

Guarantees: a field's name is its parameter name; the flag is ``--<name with dashes>`` unless declared
(``"--cgroups/--no-cgroups"``, ``"-v", "--verbose"``); the default is the field's default (shown in
``--help`` unless empty); every other keyword (``type``, ``callback``, ``envvar``, ``is_flag``) goes to
click as written.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import click

FLAG = "navarch.flag"
T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class Flag:
    """How one field is written on the command line."""

    decls: tuple[str, ...]
    help: str
    kwargs: Mapping[str, Any]


def flag(*decls: str, default: Any = None, help: str = "", **kwargs: Any) -> Any:
    """A dataclass field that is also a command-line flag."""
    return dataclasses.field(default=default, metadata={FLAG: Flag(decls, help, kwargs)})


def click_options(cls: type) -> Callable[[F], F]:
    """Decorate a click command with one option per flag field of ``cls``, in field order."""

    def decorate(fn: F) -> F:
        for f in reversed(dataclasses.fields(cls)):
            spec: Flag | None = f.metadata.get(FLAG)
            if spec is None:
                continue
            decls = spec.decls or (f"--{f.name.replace('_', '-')}",)
            kwargs = dict(spec.kwargs)
            kwargs.setdefault("show_default", f.default not in (None, "", False))
            fn = click.option(*decls, f.name, default=f.default, help=spec.help, **kwargs)(fn)
        return fn

    return decorate


def from_params(cls: type[T], params: Mapping[str, Any]) -> T:
    """The flags dataclass from click's parsed parameters (other parameters are ignored)."""
    names = [f.name for f in dataclasses.fields(cls) if FLAG in f.metadata]  # type: ignore[arg-type]
    return cls(**{name: params[name] for name in names})
