"""``navarch get``: tables, -o formats, -w, the ``all`` category, ``--no-headers`` and ``--sort-by``."""

from __future__ import annotations

from collections.abc import Sequence

import click
from google.protobuf.message import Message

from cli import printers, rawhttp
from cli.commands.common import namespace_option, ns_for
from cli.config import ConfigError, Target
from cli.context import fail, options, run
from cli.kinds_args import complete_kind, complete_name, split_kind_names
from cli.sorting import sort_key_expression, sort_objects
from controlplane.api import kinds
from controlplane.api.errors import InvalidError
from controlplane.api.objects import meta
from controlplane.api.pb import core_pb2
from controlplane.client.client import ApiClient

OUTPUTS = "wide, yaml, json, name or jsonpath=TEMPLATE"


async def _ready_endpoints(client: ApiClient, namespace: str) -> dict[str, int]:
    """Ready addresses per Service (``namespace/name``), from the Endpoints objects."""
    listed = await client.list(core_pb2.Endpoints, namespace)
    return {f"{e.metadata.namespace}/{e.metadata.name}": sum(len(s.addresses) for s in e.subsets) for e in listed.items}


async def _extra_columns(client: ApiClient, info: kinds.KindInfo, output: str, namespace: str) -> list[printers.Column]:
    """Columns that need other objects: a Service's ready endpoints."""
    if info.kind != "Service" or output not in ("", "wide"):
        return []
    ready = await _ready_endpoints(client, namespace)
    return [("ENDPOINTS", lambda o: str(ready.get(f"{meta(o).namespace}/{meta(o).name}", 0)))]


def emit(
    objs: Sequence[Message],
    info: kinds.KindInfo,
    output: str,
    *,
    as_list: bool,
    all_namespaces: bool = False,
    show_labels: bool = False,
    headers: bool = True,
    extra_columns: Sequence[printers.Column] = (),
    qualified_names: bool = False,
) -> None:
    """Print objects of one kind in the ``-o`` format asked for."""
    if output in ("", "wide"):
        text = printers.table(
            objs,
            info,
            wide=output == "wide",
            all_namespaces=all_namespaces,
            show_labels=show_labels,
            headers=headers,
            extra_columns=extra_columns,
            qualified_names=qualified_names,
        )
        if text:
            click.echo(text)
    elif output == "yaml":
        click.echo(printers.to_yaml(objs, as_list=as_list), nl=False)
    elif output == "json":
        click.echo(printers.to_json(objs, as_list=as_list))
    elif output == "name":
        for o in objs:
            click.echo(printers.name(o))
    elif output.startswith("jsonpath="):
        click.echo(printers.jsonpath(output.split("=", 1)[1], objs, as_list=as_list))
    else:
        raise click.UsageError(f"unknown output format {output!r}; use {OUTPUTS}")


def _check_output(output: str) -> None:
    if output not in ("", "wide", "yaml", "json", "name") and not output.startswith("jsonpath="):
        raise click.UsageError(f"unknown output format {output!r}; use {OUTPUTS}")


def _get_raw(path: str) -> None:
    if not path.startswith("/") or len(path) > 1024:
        raise click.UsageError(f"--raw {path[:40]!r}: a path starting with / (e.g. /metrics)")
    try:
        target = options().target()
    except ConfigError as err:
        fail(str(err))
    base = target.metrics.get("apiserver")
    if not base:
        fail(f'context "{target.context}" names no metrics endpoint of the API server (navarch up records one)')
    try:
        status, body = rawhttp.get(base.rstrip("/") + path, target)
    except rawhttp.RawError as err:
        fail(str(err))
    if status != 200:
        fail(f"the API server answered {status}: {body.strip()}")
    click.echo(body, nl=False)


@click.command()
@click.argument("kind", required=False, default="", shell_complete=complete_kind)
@click.argument("names", nargs=-1, shell_complete=complete_name)
@namespace_option
@click.option("-A", "--all-namespaces", is_flag=True, help="List across all namespaces.")
@click.option("-l", "--selector", default="", help="Label selector, e.g. app=web,tier!=db.")
@click.option("--field-selector", default="", help="Field selector, e.g. spec.nodeName=n1.")
@click.option("-o", "--output", default="", help=f"{OUTPUTS}.")
@click.option("-w", "--watch", is_flag=True, help="After listing, print changes as they happen.")
@click.option("--show-labels", is_flag=True, help="Add a LABELS column.")
@click.option("--no-headers", is_flag=True, help="Print tables without their header line.")
@click.option("--sort-by", default="", help="Order by a JSONPath, e.g. .metadata.creationTimestamp.")
@click.option("--raw", default="", help="GET this path of the API server's HTTP endpoint (e.g. /metrics).")
def get(
    kind: str,
    names: tuple[str, ...],
    all_namespaces: bool,
    selector: str,
    field_selector: str,
    output: str,
    watch: bool,
    show_labels: bool,
    no_headers: bool,
    sort_by: str,
    raw: str,
) -> None:
    """Show objects of a kind (all, or the named ones); ``get all`` shows every workload kind; ``--raw
    /metrics`` prints the API server's metrics."""
    if raw:
        _get_raw(raw)
        return
    if not kind:
        raise click.UsageError("Missing argument 'KIND' (or --raw PATH).")
    _check_output(output)
    if sort_by:
        try:
            sort_key_expression(sort_by)
        except InvalidError as err:
            raise click.UsageError(err.message) from None
    group = kinds.category(kind)
    if group and not names:
        if watch:
            raise click.UsageError("watch is only supported on individual resources, not on `all`")
        _get_category(group, all_namespaces, selector, field_selector, output, show_labels, no_headers, sort_by)
        return
    info, wanted = split_kind_names(kind, names)

    async def body(client: ApiClient, target: Target) -> None:
        ns = ns_for(info, target, all_namespaces)
        if wanted:
            objs = [await client.get_by_name(info.kind, n, ns) for n in wanted]
            rv = str(max(int(meta(o).resource_version) for o in objs))
        else:
            listed = await client.list(info.kind, ns, label_selector=selector, field_selector=field_selector)
            objs, rv = listed.items, listed.resource_version
            if not objs and output in ("", "wide") and not watch:
                where = "" if not info.namespaced or all_namespaces else f" in {ns} namespace"
                click.echo(f"No resources found{where}.", err=True)
                return
        if sort_by:
            objs = sort_objects(objs, sort_by)
        extra = await _extra_columns(client, info, output, "" if all_namespaces else ns)
        emit(
            objs,
            info,
            output,
            as_list=not wanted,
            all_namespaces=all_namespaces,
            show_labels=show_labels,
            headers=not no_headers,
            extra_columns=extra,
        )
        if not watch:
            return
        fsel = field_selector
        if wanted:
            fsel = ",".join(filter(None, [fsel, f"metadata.name={wanted[0]}"]))
        async for ev in client.watch(
            info.kind, ns, resource_version=rv, label_selector=selector, field_selector=fsel, allow_bookmarks=False
        ):
            emit(
                [ev.object],
                info,
                output,
                as_list=False,
                all_namespaces=all_namespaces,
                show_labels=show_labels,
                headers=False,
            )

    run(body)


def _get_category(
    group: list[kinds.KindInfo],
    all_namespaces: bool,
    selector: str,
    field_selector: str,
    output: str,
    show_labels: bool,
    no_headers: bool,
    sort_by: str,
) -> None:
    """``get all``: one table per kind that has objects, names qualified (``deployment.apps/web``)."""

    async def body(client: ApiClient, target: Target) -> None:
        found: list[tuple[kinds.KindInfo, list[Message]]] = []
        for info in group:
            listed = await client.list(
                info.kind, ns_for(info, target, all_namespaces), label_selector=selector, field_selector=field_selector
            )
            if listed.items:
                items = sort_objects(listed.items, sort_by) if sort_by else listed.items
                found.append((info, items))
        if not found:
            where = "" if all_namespaces else f" in {target.namespace} namespace"
            click.echo(f"No resources found{where}.", err=True)
            return
        if output not in ("", "wide"):
            everything = [o for _, items in found for o in items]
            if output.startswith("jsonpath=") or output in ("yaml", "json"):
                emit(everything, group[0], output, as_list=True)
            else:
                for o in everything:
                    click.echo(printers.name(o))
            return
        for i, (info, items) in enumerate(found):
            if i:
                click.echo("")
            extra = await _extra_columns(client, info, output, "" if all_namespaces else target.namespace)
            emit(
                items,
                info,
                output,
                as_list=True,
                all_namespaces=all_namespaces,
                show_labels=show_labels,
                headers=not no_headers,
                extra_columns=extra,
                qualified_names=True,
            )

    run(body)
