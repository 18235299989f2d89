"""Commands over objects: get, describe, apply, create, delete, edit, label, annotate, patch, scale."""

from __future__ import annotations

import asyncio
import copy
import json
import os
import shlex
import subprocess
import tempfile
import time
from collections.abc import Sequence
from typing import Any

import click
import yaml
from google.protobuf.message import Message

from cli import manifests, printers
from cli.commands.common import namespace_option
from cli.config import Target
from cli.context import fail, run
from cli.kinds_args import complete_kind, complete_name, kind_info, split_kind_names
from controlplane.api import kinds
from controlplane.api.errors import InvalidError, NotFoundError
from controlplane.api.objects import from_manifest, meta, to_manifest
from controlplane.api.pb import core_pb2
from controlplane.client.client import ApiClient, ObjectList

LAST_APPLIED = "navarch.io/last-applied-configuration"


def _ns(info: kinds.KindInfo, target: Target, all_namespaces: bool = False) -> str:
    if not info.namespaced or all_namespaces:
        return ""
    return target.namespace


def _ref(obj: Message) -> str:
    """``deployment.apps/web`` as kubectl prints it."""
    return printers.name(obj)


# --------------------------------------------------------------------- get


async def _ready_endpoints(client: ApiClient, namespace: str) -> dict[str, int]:
    """Ready addresses per Service (``namespace/name``), from the Endpoints objects."""
    listed = await client.list(core_pb2.Endpoints, namespace)
    return {f"{e.metadata.namespace}/{e.metadata.name}": sum(len(s.addresses) for s in e.subsets) for e in listed.items}


def _print(
    objs: list[Message],
    info: kinds.KindInfo,
    output: str,
    *,
    as_list: bool,
    all_namespaces: bool,
    show_labels: bool,
    headers: bool = True,
    extra_columns: Sequence[printers.Column] = (),
) -> None:
    if output in ("", "wide"):
        text = printers.table(
            objs,
            info,
            wide=output == "wide",
            all_namespaces=all_namespaces,
            show_labels=show_labels,
            headers=headers,
            extra_columns=extra_columns,
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
        raise click.UsageError(f"unknown output format {output!r}; use wide, yaml, json, name or jsonpath=...")


@click.command()
@click.argument("kind", shell_complete=complete_kind)
@click.argument("names", nargs=-1, shell_complete=complete_name)
@namespace_option
@click.option("-A", "--all-namespaces", is_flag=True, help="List across all namespaces.")
@click.option("-l", "--selector", default="", help="Label selector, e.g. app=web,tier!=db.")
@click.option("--field-selector", default="", help="Field selector, e.g. spec.nodeName=n1.")
@click.option("-o", "--output", default="", help="wide, yaml, json, name or jsonpath=TEMPLATE.")
@click.option("-w", "--watch", is_flag=True, help="After listing, print changes as they happen.")
@click.option("--show-labels", is_flag=True, help="Add a LABELS column.")
def get(
    kind: str,
    names: tuple[str, ...],
    all_namespaces: bool,
    selector: str,
    field_selector: str,
    output: str,
    watch: bool,
    show_labels: bool,
) -> None:
    """Show objects of a kind (all, or the named ones)."""
    info, wanted = split_kind_names(kind, names)

    async def body(client: ApiClient, target: Target) -> None:
        ns = _ns(info, target, all_namespaces)
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
        extra: list[printers.Column] = []
        if info.kind == "Service" and output in ("", "wide"):
            ready = await _ready_endpoints(client, "" if all_namespaces else ns)
            extra.append(("ENDPOINTS", lambda o: str(ready.get(f"{meta(o).namespace}/{meta(o).name}", 0))))
        _print(
            objs,
            info,
            output,
            as_list=not wanted,
            all_namespaces=all_namespaces,
            show_labels=show_labels,
            extra_columns=extra,
        )
        if not watch:
            return
        sel = selector
        fsel = field_selector
        if wanted:
            fsel = ",".join(filter(None, [fsel, f"metadata.name={wanted[0]}"]))
        async for ev in client.watch(
            info.kind, ns, resource_version=rv, label_selector=sel, field_selector=fsel, allow_bookmarks=False
        ):
            _print(
                [ev.object],
                info,
                output,
                as_list=False,
                all_namespaces=all_namespaces,
                show_labels=show_labels,
                headers=False,
            )

    run(body)


# ---------------------------------------------------------------- describe


def _kv_block(title: str, values: dict[str, str]) -> list[str]:
    if not values:
        return [f"{title}:<none>".replace(":<", ":  <")]
    lines = [
        f"{title}:  {k}={v}" if i == 0 else f"{' ' * (len(title) + 3)}{k}={v}"
        for i, (k, v) in enumerate(sorted(values.items()))
    ]
    return lines


def _indent(text: str, n: int = 2) -> list[str]:
    return [" " * n + line for line in text.rstrip().splitlines()]


async def _endpoint_addresses(client: ApiClient, namespace: str, name: str) -> list[str]:
    """``ip:port`` of a Service's endpoints, not-ready ones marked."""
    try:
        ep = await client.get(core_pb2.Endpoints, name, namespace)
    except NotFoundError:
        return []
    out = []
    for subset in ep.subsets:
        ports = ",".join(str(p.port) for p in subset.ports) or "-"
        out += [f"{a.ip}:{ports}" for a in subset.addresses]
        out += [f"{a.ip}:{ports} (not ready)" for a in subset.not_ready_addresses]
    return out


def _with_endpoints(lines: list[str], addresses: list[str]) -> list[str]:
    """Describe lines with an Endpoints line before the events."""
    at = next((i for i, line in enumerate(lines) if line.startswith("Events:")), len(lines))
    return [*lines[:at], f"Endpoints:    {', '.join(addresses) or '<none>'}", *lines[at:]]


def describe_lines(obj: Message, events: list[Message]) -> list[str]:
    """A human summary of an object and its recent events."""
    info = kinds.of_message(obj)
    m = meta(obj)
    lines = [f"Name:         {m.name}"]
    if info.namespaced:
        lines.append(f"Namespace:    {m.namespace}")
    lines += _kv_block("Labels", dict(m.labels))
    lines += _kv_block("Annotations", {k: v for k, v in m.annotations.items() if k != LAST_APPLIED})
    if m.creation_timestamp.seconds:
        lines.append(f"Created:      {m.creation_timestamp.ToJsonString()} ({printers.age(m.creation_timestamp)} ago)")
    if m.HasField("deletion_timestamp"):
        lines.append(f"Deleting:     since {m.deletion_timestamp.ToJsonString()}")
    for ref in m.owner_references:
        lines.append(f"Controlled By:  {ref.kind}/{ref.name}")
    doc = printers.manifest(obj)
    for section in ("spec", "status", "data", "subsets"):
        if doc.get(section):
            shown = doc[section]
            if info.kind == "Secret" and section == "data":
                shown = {k: f"{len(v)} bytes" for k, v in doc[section].items()}
            lines.append(f"{section.capitalize()}:")
            lines += _indent(yaml.safe_dump(shown, sort_keys=False, default_flow_style=False))
    lines.append("Events:" if events else "Events:       <none>")
    if events:
        lines += _indent(printers.table(events, kinds.lookup("Event")), 2)
    return lines


@click.command()
@click.argument("kind", shell_complete=complete_kind)
@click.argument("names", nargs=-1, required=False, shell_complete=complete_name)
@namespace_option
@click.option("-l", "--selector", default="", help="Describe the objects this label selector matches.")
def describe(kind: str, names: tuple[str, ...], selector: str) -> None:
    """Show details of objects, with their recent events."""
    info, wanted = split_kind_names(kind, names)

    async def body(client: ApiClient, target: Target) -> None:
        ns = _ns(info, target)
        if wanted:
            objs = [await client.get_by_name(info.kind, n, ns) for n in wanted]
        else:
            objs = (await client.list(info.kind, ns, label_selector=selector)).items
        for i, obj in enumerate(objs):
            m = meta(obj)
            events = (
                await client.list("Event", m.namespace or "default", field_selector=f"involvedObject.uid={m.uid}")
            ).items
            events.sort(key=lambda e: e.last_timestamp.ToNanoseconds())  # type: ignore[attr-defined]
            if i:
                click.echo("")
            lines = describe_lines(obj, events[-20:])
            if info.kind == "Service":
                lines = _with_endpoints(lines, await _endpoint_addresses(client, m.namespace, m.name))
            for line in lines:
                click.echo(line)

    run(body)


# ------------------------------------------------------------ apply/create


def _covers(live: Any, wanted: Any) -> bool:
    """Whether the live value already has everything the manifest asks for (servers add defaults)."""
    if isinstance(wanted, dict):
        return isinstance(live, dict) and all(_covers(live.get(k), v) for k, v in wanted.items())
    if isinstance(wanted, list):
        return (
            isinstance(live, list)
            and len(live) == len(wanted)
            and all(_covers(a, b) for a, b in zip(live, wanted, strict=True))
        )
    return bool(live == wanted)


def apply_patch(last: dict[str, Any] | None, wanted: dict[str, Any], live: dict[str, Any]) -> dict[str, Any]:
    """A three-way merge patch: fields the last apply set and the manifest dropped are removed; fields the
    manifest sets that the live object does not already have are set (lists are replaced whole)."""
    patch: dict[str, Any] = {}
    for key in last or {}:
        if key not in wanted:
            patch[key] = None
    for key, value in wanted.items():
        current = live.get(key)
        if isinstance(value, dict) and isinstance(current, dict):
            sub = apply_patch(
                (last or {}).get(key) if isinstance((last or {}).get(key), dict) else None, value, current
            )
            if sub:
                patch[key] = sub
        elif not _covers(current, value):
            patch[key] = value
    return patch


async def _apply_one(client: ApiClient, doc: manifests.Document, dry_run: bool) -> str:
    obj = doc.obj
    info = kinds.of_message(obj)
    m = meta(obj)
    wanted = copy.deepcopy(doc.raw)
    wanted.setdefault("metadata", {})
    if info.namespaced:
        wanted["metadata"]["namespace"] = m.namespace
    applied = json.dumps(wanted, sort_keys=True, separators=(",", ":"))
    try:
        live = await client.get_by_name(info.kind, m.name, m.namespace)
    except NotFoundError:
        m.annotations[LAST_APPLIED] = applied
        created = await client.create(obj, dry_run=dry_run)
        return f"{_ref(created)} created"
    live_doc = printers.manifest(live)
    last_text = meta(live).annotations.get(LAST_APPLIED)
    last = json.loads(last_text) if last_text else None
    body = {k: v for k, v in wanted.items() if k not in ("apiVersion", "kind")}
    patch = apply_patch(
        {k: v for k, v in (last or {}).items() if k not in ("apiVersion", "kind")} if last else None, body, live_doc
    )
    patch.get("metadata", {}).pop("namespace", None)
    if patch.get("metadata") == {}:
        patch.pop("metadata")
    if not patch and last_text == applied:
        return f"{_ref(live)} unchanged"
    patch.setdefault("metadata", {})
    patch["metadata"].setdefault("annotations", {})[LAST_APPLIED] = applied
    patch["metadata"]["resourceVersion"] = meta(live).resource_version  # conflict detection
    out: Message = await client.patch(info.kind, m.name, patch, m.namespace, dry_run=dry_run)
    return f"{_ref(out)} configured"


def _file_options(fn: Any) -> Any:
    fn = click.option("-R", "--recursive", is_flag=True, help="Read directories recursively.")(fn)
    fn = click.option(
        "-f",
        "--filename",
        "filenames",
        multiple=True,
        required=True,
        help="File, directory or - for stdin (repeatable).",
        type=click.Path(allow_dash=True),
    )(fn)
    return fn


def _load(filenames: tuple[str, ...], recursive: bool, target: Target, explicit_ns: bool) -> list[manifests.Document]:
    try:
        return manifests.load(list(filenames), recursive=recursive, namespace=target.namespace if explicit_ns else "")
    except InvalidError as err:
        fail(err.message)


def _explicit_namespace() -> bool:
    from cli.context import options

    return options().namespace is not None


@click.command()
@_file_options
@namespace_option
@click.option("--dry-run", type=click.Choice(["none", "server"]), default="none", help="server: validate only.")
def apply(filenames: tuple[str, ...], recursive: bool, dry_run: str) -> None:
    """Create or update objects from manifests (every document is validated before anything is sent)."""

    async def body(client: ApiClient, target: Target) -> None:
        docs = _load(filenames, recursive, target, _explicit_namespace())
        for doc in docs:
            if not meta(doc.obj).namespace and kinds.of_message(doc.obj).namespaced:
                meta(doc.obj).namespace = target.namespace
            line = await _apply_one(client, doc, dry_run == "server")
            click.echo(line + (" (server dry run)" if dry_run == "server" else ""))

    run(body)


@click.command()
@_file_options
@namespace_option
def create(filenames: tuple[str, ...], recursive: bool) -> None:
    """Create objects from manifests; an existing object is an error."""

    async def body(client: ApiClient, target: Target) -> None:
        for doc in _load(filenames, recursive, target, _explicit_namespace()):
            if not meta(doc.obj).namespace and kinds.of_message(doc.obj).namespaced:
                meta(doc.obj).namespace = target.namespace
            created = await client.create(doc.obj)
            click.echo(f"{_ref(created)} created")

    run(body)


# ------------------------------------------------------------------ delete


@click.command()
@click.argument("kind", required=False, shell_complete=complete_kind)
@click.argument("names", nargs=-1, shell_complete=complete_name)
@click.option(
    "-f",
    "--filename",
    "filenames",
    multiple=True,
    type=click.Path(allow_dash=True),
    help="Delete the objects in these manifests.",
)
@click.option("-R", "--recursive", is_flag=True)
@namespace_option
@click.option("--all", "all_", is_flag=True, help="Delete every object of the kind in the namespace.")
@click.option("-l", "--selector", default="", help="Delete the objects this label selector matches.")
@click.option("--grace-period", type=int, default=None, help="Seconds to let processes stop (0: at once).")
@click.option("--cascade", type=click.Choice(["background", "foreground", "orphan"]), default="background")
@click.option("--wait/--no-wait", default=False, help="Wait until the objects are gone.")
@click.option("--timeout", type=float, default=60.0, help="Seconds to wait with --wait.")
@click.option("--ignore-not-found", is_flag=True)
def delete(
    kind: str | None,
    names: tuple[str, ...],
    filenames: tuple[str, ...],
    recursive: bool,
    all_: bool,
    selector: str,
    grace_period: int | None,
    cascade: str,
    wait: bool,
    timeout: float,
    ignore_not_found: bool,
) -> None:
    """Delete objects by file, by name, by selector or all of a kind."""
    if not filenames and not kind:
        raise click.UsageError("give -f FILE or KIND [NAME...]")

    async def body(client: ApiClient, target: Target) -> None:
        todo: list[tuple[kinds.KindInfo, str, str]] = []
        if filenames:
            for doc in _load(filenames, recursive, target, _explicit_namespace()):
                info = kinds.of_message(doc.obj)
                todo.append(
                    (info, meta(doc.obj).namespace or (target.namespace if info.namespaced else ""), meta(doc.obj).name)
                )
        else:
            assert kind is not None
            info, wanted = split_kind_names(kind, names)
            ns = _ns(info, target)
            if wanted:
                todo += [(info, ns, n) for n in wanted]
            elif all_ or selector:
                listed: ObjectList[Message] = await client.list(info.kind, ns, label_selector=selector)
                todo += [(info, ns, meta(o).name) for o in listed.items]
            else:
                raise click.UsageError("give NAME..., --all or -l SELECTOR")
        policy = {"background": "Background", "foreground": "Foreground", "orphan": "Orphan"}[cascade]
        pending: list[tuple[kinds.KindInfo, str, str]] = []
        for info, ns, name in todo:
            try:
                obj: Message
                obj, _gone = await client.delete(
                    info.kind, name, ns, grace_period_seconds=grace_period, propagation_policy=policy
                )
            except NotFoundError:
                if ignore_not_found:
                    continue
                raise
            click.echo(f'{printers.name(obj).split("/")[0]} "{name}" deleted')
            pending.append((info, ns, name))
        if wait:
            await _wait_gone(client, pending, timeout)

    run(body)


async def _wait_gone(client: ApiClient, items: list[tuple[kinds.KindInfo, str, str]], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    delay = 0.05
    for info, ns, name in items:
        while True:
            try:
                await client.get_by_name(info.kind, name, ns)
            except NotFoundError:
                break
            if time.monotonic() > deadline:
                fail(f'timed out after {timeout:.0f}s waiting for {info.kind} "{name}" to be deleted')
            await asyncio.sleep(delay)
            delay = min(delay * 2, 1.0)


# --------------------------------------------------------- edit and patches


@click.command()
@click.argument("kind", shell_complete=complete_kind)
@click.argument("name", required=False, shell_complete=complete_name)
@namespace_option
def edit(kind: str, name: str | None) -> None:
    """Edit an object in $EDITOR; saved only if unchanged meanwhile (else the edit is kept in a file)."""
    info, wanted = split_kind_names(kind, (name,) if name else ())
    if len(wanted) != 1:
        raise click.UsageError("edit takes exactly one object")

    async def body(client: ApiClient, target: Target) -> None:
        ns = _ns(info, target)
        obj = await client.get_by_name(info.kind, wanted[0], ns)
        original = yaml.safe_dump(printers.manifest(obj), sort_keys=False)
        edited = await asyncio.to_thread(_run_editor, original)
        if edited.strip() == original.strip():
            click.echo("Edit cancelled, no changes made.")
            return
        try:
            doc = yaml.safe_load(edited)
            new = from_manifest(doc, where="edited object")
        except (yaml.YAMLError, InvalidError) as err:
            path = _keep(edited)
            fail(f"{err}\nyour edit is saved in {path}")
        meta(new).resource_version = meta(obj).resource_version
        try:
            out = await client.update(new)
        except Exception:
            path = _keep(edited)
            click.echo(f"error: your edit is saved in {path}", err=True)
            raise
        click.echo(f"{_ref(out)} edited")

    run(body)


def _run_editor(text: str) -> str:
    editor = os.environ.get("NAVARCH_EDITOR") or os.environ.get("EDITOR") or "vi"
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", prefix="navarch-edit-", delete=False) as f:
        f.write(text)
        path = f.name
    try:
        result = subprocess.run([*shlex.split(editor), path], check=False)
        if result.returncode != 0:
            fail(f"the editor {editor!r} exited with status {result.returncode}")
        with open(path) as f:
            return f.read()
    finally:
        os.unlink(path)


def _keep(text: str) -> str:
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", prefix="navarch-edit-", delete=False) as f:
        f.write(text)
        return f.name


def _parse_pairs(pairs: tuple[str, ...], what: str) -> tuple[dict[str, str], list[str]]:
    sets: dict[str, str] = {}
    removes: list[str] = []
    for pair in pairs:
        if pair.endswith("-") and "=" not in pair:
            removes.append(pair[:-1])
        elif "=" in pair:
            k, _, v = pair.partition("=")
            sets[k] = v
        else:
            raise click.UsageError(f"{what} {pair!r}: use key=value to set or key- to remove")
    return sets, removes


def _metadata_map_command(field: str, what: str) -> click.Command:
    @click.command(name=what.lower() if what != "Label" else "label", help=f"Set or remove {field} (k=v, k-).")
    @click.argument("kind", shell_complete=complete_kind)
    @click.argument("name", shell_complete=complete_name)
    @click.argument("pairs", nargs=-1, required=True)
    @namespace_option
    @click.option("--overwrite", is_flag=True, help="Allow changing existing values.")
    def command(kind: str, name: str, pairs: tuple[str, ...], overwrite: bool) -> None:
        info = kind_info(kind)
        sets, removes = _parse_pairs(pairs, what.lower())

        async def body(client: ApiClient, target: Target) -> None:
            ns = _ns(info, target)
            obj = await client.get_by_name(info.kind, name, ns)
            current = getattr(meta(obj), field)
            for k, v in sets.items():
                if k in current and current[k] != v and not overwrite:
                    fail(f"'{k}' already has a value ({current[k]}), and --overwrite is false")
            change: dict[str, Any] = {**sets, **{k: None for k in removes}}
            camel = "labels" if field == "labels" else "annotations"
            patch = {"metadata": {camel: change, "resourceVersion": meta(obj).resource_version}}
            out: Message = await client.patch(info.kind, name, patch, ns)
            click.echo(f"{_ref(out)} {'labeled' if field == 'labels' else 'annotated'}")

        run(body)

    return command


label = _metadata_map_command("labels", "Label")
annotate = _metadata_map_command("annotations", "Annotate")


@click.command()
@click.argument("kind", shell_complete=complete_kind)
@click.argument("name", shell_complete=complete_name)
@namespace_option
@click.option("-p", "--patch", "patch_text", required=True, help="A JSON (or YAML) merge patch.")
@click.option("--type", "patch_type", type=click.Choice(["merge"]), default="merge")
@click.option("--subresource", type=click.Choice(["status"]), default=None)
def patch(kind: str, name: str, patch_text: str, patch_type: str, subresource: str | None) -> None:
    """Apply a JSON merge patch to an object."""
    info = kind_info(kind)
    try:
        body_doc = yaml.safe_load(patch_text)
    except yaml.YAMLError as err:
        raise click.UsageError(f"--patch is not valid JSON or YAML: {err}") from None
    if not isinstance(body_doc, dict):
        raise click.UsageError("--patch must be an object")

    async def body(client: ApiClient, target: Target) -> None:
        before = await client.get_by_name(info.kind, name, _ns(info, target))
        out: Message = await client.patch(info.kind, name, body_doc, _ns(info, target), status=subresource == "status")
        same = to_manifest(before) == {**to_manifest(out), "metadata": to_manifest(before)["metadata"]}
        click.echo(f"{_ref(out)} {'patched (no change)' if same else 'patched'}")

    run(body)


@click.command()
@click.argument("kind", shell_complete=complete_kind)
@click.argument("name", required=False, shell_complete=complete_name)
@namespace_option
@click.option("--replicas", type=click.IntRange(min=0), required=True)
@click.option("--current-replicas", type=int, default=None, help="Only scale if it has this many now.")
def scale(kind: str, name: str | None, replicas: int, current_replicas: int | None) -> None:
    """Set the replicas of a Deployment or ReplicaSet."""
    info, wanted = split_kind_names(kind, (name,) if name else ())
    if info.kind not in ("Deployment", "ReplicaSet") or len(wanted) != 1:
        raise click.UsageError("scale takes one deployment or replicaset")

    async def body(client: ApiClient, target: Target) -> None:
        obj = await client.get_by_name(info.kind, wanted[0], _ns(info, target))
        if current_replicas is not None and obj.spec.replicas != current_replicas:  # type: ignore[attr-defined]
            fail(f"expected {current_replicas} replicas, found {obj.spec.replicas}")  # type: ignore[attr-defined]
        patch_doc = {"spec": {"replicas": replicas}, "metadata": {"resourceVersion": meta(obj).resource_version}}
        out: Message = await client.patch(info.kind, wanted[0], patch_doc, _ns(info, target))
        click.echo(f"{_ref(out)} scaled")

    run(body)


COMMANDS = [get, describe, apply, create, delete, edit, label, annotate, patch, scale]
