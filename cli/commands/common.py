"""Options and helpers shared by several commands."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

from cli import manifests
from cli.config import Target
from cli.context import fail, options, warn
from controlplane.api import fieldvalidation, kinds
from controlplane.api.durations import parse_duration
from controlplane.api.errors import InvalidError
from controlplane.api.objects import meta

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


class Duration(click.ParamType[float, Any]):
    """A Go-style duration as kubectl's flags take it (``30s``, ``5m``, ``1h30m``; a bare number is seconds),
    converted to seconds; negative values are refused."""

    name = "duration"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> float:
        if isinstance(value, (int, float)):
            seconds = float(value)
        else:
            try:
                seconds = parse_duration(str(value))
            except ValueError as err:
                self.fail(str(err), param, ctx)
        if seconds < 0:
            self.fail(f"{value!r} is negative", param, ctx)
        return seconds


DURATION = Duration()


LAST_APPLIED = "navarch.io/last-applied-configuration"
"""The annotation where apply records the manifest it last applied (kubectl's last-applied-configuration)."""


def ns_for(info: kinds.KindInfo, target: Target, all_namespaces: bool = False) -> str:
    """The namespace a command over ``info`` works in ("" for cluster-scoped kinds and ``-A``)."""
    if not info.namespaced or all_namespaces:
        return ""
    return target.namespace


def explicit_namespace() -> bool:
    """Whether ``-n`` was given (then manifests naming another namespace are refused)."""
    return options().namespace is not None


def file_options(fn: F, *, required: bool = True) -> F:
    """``-f/--filename`` (repeatable, ``-`` for stdin) and ``-R``."""
    fn = click.option("-R", "--recursive", is_flag=True, help="Read directories recursively.")(fn)
    return click.option(
        "-f",
        "--filename",
        "filenames",
        multiple=True,
        required=required,
        help="File, directory or - for stdin (repeatable).",
        type=click.Path(allow_dash=True),
    )(fn)


def _validate_policy(ctx: click.Context, param: click.Parameter, value: str) -> str:
    aliases = {"true": "Strict", "false": "Ignore"}
    try:
        return fieldvalidation.check_policy(aliases.get(value.lower(), value))
    except InvalidError:
        raise click.BadParameter(f"{value!r}: use strict, warn or ignore (true = strict, false = ignore)") from None


def validate_option(fn: F) -> F:
    """kubectl's ``--validate``: what to do with fields Kubernetes does not define (strict refuses them)."""
    return click.option(
        "--validate",
        "field_validation",
        default="strict",
        show_default=True,
        callback=_validate_policy,
        help="Fields unknown to Kubernetes: strict (refuse), warn (drop with a warning) or ignore. Fields "
        "Kubernetes defines that Navarch does not model are always dropped with a warning.",
    )(fn)


def dry_run_option(fn: F) -> F:
    """kubectl's ``--dry-run``: none, client (nothing is sent: print what would be) or server (validate only)."""
    return click.option(
        "--dry-run",
        type=click.Choice(["none", "client", "server"]),
        default="none",
        show_default=True,
        help="client: print what would be sent, send nothing; server: the server validates, stores nothing.",
    )(fn)


def load_documents(
    filenames: tuple[str, ...], recursive: bool, target: Target, field_validation: str = fieldvalidation.STRICT
) -> list[manifests.Document]:
    """Every document of the files, validated (one error listing every bad one), warnings printed; namespaced
    objects without a namespace get the target's."""
    try:
        docs = manifests.load(
            list(filenames),
            recursive=recursive,
            namespace=target.namespace if explicit_namespace() else "",
            field_validation=field_validation,
        )
    except InvalidError as err:
        fail(err.message)
    for doc in docs:
        for warning in doc.warnings:
            warn(warning)
        if not meta(doc.obj).namespace and kinds.of_message(doc.obj).namespaced:
            meta(doc.obj).namespace = target.namespace
    return docs
