"""Writing objects from manifests: ``apply``, ``create`` and ``diff``.

``apply`` records the manifest it applied in an annotation and sends a three-way merge patch
(controlplane.api.patches) next time; ``diff`` shows, as a unified diff, what apply would change, computed by
the server (a server-side dry run, as kubectl does) so that defaults and validation are the server's own.
"""

from __future__ import annotations

import copy
import difflib
import functools
import json
from typing import Any

import click
import yaml
from google.protobuf.message import Message

from cli import manifests, printers
from cli.commands.common import (
    LAST_APPLIED,
    dry_run_option,
    file_options,
    load_documents,
    namespace_option,
    validate_option,
)
from cli.config import ConfigError, Target
from cli.context import fail, options, run, warn
from controlplane.api import kinds
from controlplane.api.cronjobs import INSTANTIATE, job_from_cronjob
from controlplane.api.errors import NotFoundError
from controlplane.api.fieldvalidation import ignored_field_warnings
from controlplane.api.objects import describe, meta, typed_manifest
from controlplane.api.patches import three_way_patch
from controlplane.api.pb import batch_pb2
from controlplane.client.client import ApiClient


def _recorded(doc: manifests.Document) -> tuple[dict[str, Any], str]:
    """The manifest apply records (namespace filled in) and its annotation text."""
    wanted = copy.deepcopy(doc.raw)
    wanted.setdefault("metadata", {})
    if kinds.of_message(doc.obj).namespaced:
        wanted["metadata"]["namespace"] = meta(doc.obj).namespace
    return wanted, json.dumps(wanted, sort_keys=True, separators=(",", ":"))


def apply_patch_for(doc: manifests.Document, live: Message) -> dict[str, Any] | None:
    """The merge patch apply sends for ``doc`` given the live object; None when nothing would change."""
    wanted, applied = _recorded(doc)
    live_doc = typed_manifest(live)
    last_text = meta(live).annotations.get(LAST_APPLIED)
    last = json.loads(last_text) if last_text else None
    body = {k: v for k, v in wanted.items() if k not in ("apiVersion", "kind")}
    previous = {k: v for k, v in last.items() if k not in ("apiVersion", "kind")} if isinstance(last, dict) else None
    patch = three_way_patch(previous, body, live_doc)
    patch.get("metadata", {}).pop("namespace", None)
    if patch.get("metadata") == {}:
        patch.pop("metadata")
    if not patch and last_text == applied:
        return None
    patch.setdefault("metadata", {})
    patch["metadata"].setdefault("annotations", {})[LAST_APPLIED] = applied
    patch["metadata"]["resourceVersion"] = meta(live).resource_version  # conflict detection
    return patch


def for_creation(doc: manifests.Document) -> Message:
    """The object apply creates: the manifest with the last-applied annotation."""
    obj = copy.deepcopy(doc.obj)
    meta(obj).annotations[LAST_APPLIED] = _recorded(doc)[1]
    return obj


async def apply_one(client: ApiClient, doc: manifests.Document, *, server_dry_run: bool, field_validation: str) -> str:
    """Create or patch one object; the line kubectl prints (``deployment.apps/web configured``)."""
    info = kinds.of_message(doc.obj)
    m = meta(doc.obj)
    try:
        live = await client.get_by_name(info.kind, m.name, m.namespace)
    except NotFoundError:
        created = await client.create(for_creation(doc), dry_run=server_dry_run)
        return f"{printers.name(created)} created"
    patch = apply_patch_for(doc, live)
    if patch is None:
        return f"{printers.name(live)} unchanged"
    out: Message = await client.patch(
        info.kind, m.name, patch, m.namespace, dry_run=server_dry_run, field_validation=field_validation
    )
    return f"{printers.name(out)} configured"


def _print_client_dry_run(objs: list[Message], output: str) -> None:
    """What would be sent: the objects as YAML (or JSON, or names), nothing contacted; the warnings the server
    would give about fields it keeps but ignores are given here instead."""
    for o in objs:
        for warning in ignored_field_warnings(o):
            warn(f"{describe(o)}: {warning}")
    if output == "name":
        for o in objs:
            click.echo(f"{printers.name(o)} (dry run)")
    elif output == "json":
        click.echo(printers.to_json(objs, as_list=len(objs) != 1))
    else:
        click.echo(printers.to_yaml(objs, as_list=len(objs) != 1), nl=False)


_output_option = click.option(
    "-o", "--output", type=click.Choice(["", "yaml", "json", "name"]), default="", help="Print objects, not lines."
)


@click.command()
@file_options
@namespace_option
@dry_run_option
@validate_option
@_output_option
def apply(filenames: tuple[str, ...], recursive: bool, dry_run: str, field_validation: str, output: str) -> None:
    """Create or update objects from manifests (every document is validated before anything is sent)."""
    if dry_run == "client":
        docs = load_documents(filenames, recursive, _local_target(), field_validation)
        _print_client_dry_run([for_creation(d) for d in docs], output or "yaml")
        return

    async def body(client: ApiClient, target: Target) -> None:
        for doc in load_documents(filenames, recursive, target, field_validation):
            line = await apply_one(client, doc, server_dry_run=dry_run == "server", field_validation=field_validation)
            if output == "name":
                line = line.rsplit(" ", 1)[0]
            click.echo(line + (" (server dry run)" if dry_run == "server" else ""))

    run(body)


@click.group(invoke_without_command=True)
@functools.partial(file_options, required=False)
@namespace_option
@dry_run_option
@validate_option
@_output_option
@click.pass_context
def create(
    ctx: click.Context, filenames: tuple[str, ...], recursive: bool, dry_run: str, field_validation: str, output: str
) -> None:
    """Create objects from manifests (-f); an existing object is an error. "create job" makes a Job."""
    if ctx.invoked_subcommand is not None:
        return
    if not filenames:
        fail("must specify -f, or what to create (job NAME --from=cronjob/NAME)")
    if dry_run == "client":
        docs = load_documents(filenames, recursive, _local_target(), field_validation)
        _print_client_dry_run([d.obj for d in docs], output or "yaml")
        return

    async def body(client: ApiClient, target: Target) -> None:
        for doc in load_documents(filenames, recursive, target, field_validation):
            created = await client.create(doc.obj, dry_run=dry_run == "server")
            suffix = " (server dry run)" if dry_run == "server" else ""
            click.echo(f"{printers.name(created)}{'' if output == 'name' else ' created'}{suffix}")

    run(body)


@create.command(name="job")
@click.argument("name")
@click.option("--from", "source", required=True, help="The object to make the Job from: cronjob/NAME.")
@namespace_option
@_output_option
def create_job(name: str, source: str, output: str) -> None:
    """Create a Job now from a CronJob's template (as kubectl create job NAME --from=cronjob/NAME)."""
    kind, _, from_name = source.partition("/")
    try:
        info: kinds.KindInfo | None = kinds.lookup(kind)
    except NotFoundError:
        info = None
    if info is None or info.kind != "CronJob" or not from_name:
        fail(f"--from must name a CronJob as cronjob/NAME, not {source!r}")

    async def body(client: ApiClient, target: Target) -> None:
        cj = await client.get(batch_pb2.CronJob, from_name, target.namespace)
        created = await client.create(job_from_cronjob(cj, name, {INSTANTIATE: "manual"}))
        click.echo(f"{printers.name(created)}{'' if output == 'name' else ' created'}")

    run(body)


def _local_target() -> Target:
    """The target for a client dry run: only its namespace is used (a broken context still fails here)."""
    try:
        return options().target()
    except ConfigError as err:
        fail(str(err))


# Fields that change on every write, or that the server fills in, shown in neither side of a diff.
_MASKED_METADATA = ("resourceVersion", "managedFields")


def _diffable(obj: Message | None) -> str:
    if obj is None:
        return ""
    doc = typed_manifest(obj)
    for key in _MASKED_METADATA:
        doc.get("metadata", {}).pop(key, None)
    return yaml.safe_dump(doc, sort_keys=False)


def _diff_name(obj: Message) -> str:
    """kubectl's file name for an object in a diff: ``apps.v1.Deployment.default.web``."""
    info = kinds.of_message(obj)
    version = info.api_version.replace("/", ".")
    m = meta(obj)
    return ".".join(p for p in (version, info.kind, m.namespace, m.name) if p)


@click.command()
@file_options
@namespace_option
@validate_option
def diff(filenames: tuple[str, ...], recursive: bool, field_validation: str) -> None:
    """Show what apply would change: live objects against the result of applying the manifests (a server dry
    run), as a unified diff. Exit 0: no differences; 1: differences; more: an error (as kubectl diff)."""

    async def body(client: ApiClient, target: Target) -> bool:
        different = False
        for doc in load_documents(filenames, recursive, target, field_validation):
            info = kinds.of_message(doc.obj)
            m = meta(doc.obj)
            live: Message | None
            try:
                live = await client.get_by_name(info.kind, m.name, m.namespace)
            except NotFoundError:
                live = None
            if live is None:
                merged: Message = await client.create(for_creation(doc), dry_run=True)
            else:
                patch = apply_patch_for(doc, live)
                merged = (
                    live
                    if patch is None
                    else await client.patch(
                        info.kind, m.name, patch, m.namespace, dry_run=True, field_validation=field_validation
                    )
                )
            before, after = _diffable(live), _diffable(merged)
            if before == after:
                continue
            different = True
            name = _diff_name(merged)
            lines = difflib.unified_diff(
                before.splitlines(keepends=True),
                after.splitlines(keepends=True),
                fromfile=f"live/{name}" if live is not None else "/dev/null",
                tofile=f"merged/{name}",
            )
            click.echo(f"diff -u -N live/{name} merged/{name}")
            click.echo("".join(lines), nl=False)
        return different

    if run(body, error_code=2):
        raise SystemExit(1)
