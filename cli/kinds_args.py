"""Kind and name arguments: aliases, ``kind/name`` syntax, and shell completion."""

from __future__ import annotations

import asyncio

import click
from click.shell_completion import CompletionItem

from cli.config import ConfigError, resolve
from cli.context import client_config
from controlplane.api import kinds
from controlplane.api.errors import ApiError, NotFoundError
from controlplane.client.client import ApiClient


def kind_info(name: str) -> kinds.KindInfo:
    """The kind a user typed (``po``, ``pods``, ``deployments.apps``, ``Deployment``)."""
    try:
        return kinds.lookup(name)
    except NotFoundError:
        names = ", ".join(sorted({k.plural for k in kinds.KINDS}))
        raise click.UsageError(f'the server doesn\'t have a resource type "{name}" (known: {names})') from None


def split_kind_names(kind: str, names: tuple[str, ...]) -> tuple[kinds.KindInfo, list[str]]:
    """Accept ``KIND NAME...`` and ``KIND/NAME`` forms."""
    if "/" in kind:
        k, _, n = kind.partition("/")
        return kind_info(k), [n, *names]
    return kind_info(kind), list(names)


def complete_kind(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[CompletionItem]:
    """Kinds by plural and short name."""
    words = sorted({k.plural for k in kinds.KINDS} | {s for k in kinds.KINDS for s in k.short_names})
    return [CompletionItem(w) for w in words if w.startswith(incomplete)]


def complete_name(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[CompletionItem]:
    """Object names of the kind given earlier on the line (asks the API server, briefly)."""
    kind = ctx.params.get("kind")
    if not kind:
        return []
    try:
        info = kinds.lookup(str(kind).split("/")[0])
        target = resolve(server=None, context=None, namespace=ctx.params.get("namespace"))
    except (NotFoundError, ConfigError):
        return []

    async def names() -> list[str]:
        async with ApiClient(client_config(target, timeout=2)) as client:
            listed = await client.list(info.kind, target.namespace if info.namespaced else "")
            return [o.metadata.name for o in listed.items]  # type: ignore[attr-defined]

    try:
        found = asyncio.run(names())
    except (ApiError, OSError):
        return []
    return [CompletionItem(n) for n in found if n.startswith(incomplete)]
