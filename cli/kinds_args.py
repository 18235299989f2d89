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


async def resolve_pod(client: ApiClient, namespace: str, ref: str) -> str:
    """The pod a ``logs``/``exec`` argument names, as kubectl reads it: ``NAME`` or ``pod/NAME`` is that pod;
    ``KIND/NAME`` of an object with a pod selector (a Deployment, ReplicaSet, StatefulSet, DaemonSet, Job or
    Service) is one of its pods — a Running and Ready one first, then the oldest — said on stderr when there
    are several. A kind without pods, or no pod at all, is a clear error."""
    if "/" not in ref:
        return ref
    kind, _, name = ref.partition("/")
    info = kind_info(kind)
    if info.kind == "Pod":
        return name
    obj = await client.get_by_name(info.plural, name, namespace)
    spec = getattr(obj, "spec", None)
    selector = getattr(spec, "selector", None) if spec is not None else None
    if selector is None:
        raise click.UsageError(f"{info.plural}/{name} has no pods to choose from (it selects none)")
    from controlplane.api.pb import core_pb2
    from controlplane.api.selectors import selector_text

    # A Service's selector is a plain map; the workloads' is a LabelSelector.
    text = (
        ",".join(f"{k}={v}" for k, v in sorted(selector.items())) if info.kind == "Service" else selector_text(selector)
    )
    if not text:
        raise click.UsageError(f"{info.plural}/{name} has an empty selector: it names no pods")
    pods = [p for p in (await client.list(core_pb2.Pod, namespace, label_selector=text)).items if p.spec.node_name]
    if not pods:
        raise click.UsageError(f"no scheduled pods of {info.plural}/{name} in namespace {namespace}")

    def rank(p: core_pb2.Pod) -> tuple[bool, bool, str, str]:
        ready = any(c.type == "Ready" and c.status == "True" for c in p.status.conditions)
        created = p.metadata.creation_timestamp.ToJsonString() if p.metadata.HasField("creation_timestamp") else ""
        return (p.status.phase != "Running", not ready, created, p.metadata.name)

    chosen = min(pods, key=rank).metadata.name
    if len(pods) > 1:
        click.echo(f"Found {len(pods)} pods, using pod/{chosen}", err=True)
    return chosen
