"""Changing objects in place: ``edit``, ``label``, ``annotate``, ``patch`` and ``scale``."""

from __future__ import annotations

import asyncio
import os
import shlex
import subprocess
import tempfile
from typing import Any

import click
import yaml
from google.protobuf.message import Message

from cli import printers
from cli.commands.common import namespace_option, ns_for, validate_option
from cli.config import Target
from cli.context import fail, run
from cli.kinds_args import complete_kind, complete_name, kind_info, split_kind_names
from controlplane.api.errors import InvalidError
from controlplane.api.objects import from_manifest, meta, to_manifest, typed_manifest
from controlplane.api.pb import autoscaling_pb2
from controlplane.client.client import ApiClient


def _ref(obj: Message) -> str:
    return printers.name(obj)


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
        ns = ns_for(info, target)
        obj = await client.get_by_name(info.kind, wanted[0], ns)
        original = yaml.safe_dump(typed_manifest(obj), sort_keys=False)
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
            ns = ns_for(info, target)
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
@validate_option
def patch(
    kind: str, name: str, patch_text: str, patch_type: str, subresource: str | None, field_validation: str
) -> None:
    """Apply a JSON merge patch to an object (fields unknown to Kubernetes are refused unless --validate says)."""
    info = kind_info(kind)
    try:
        body_doc = yaml.safe_load(patch_text)
    except yaml.YAMLError as err:
        raise click.UsageError(f"--patch is not valid JSON or YAML: {err}") from None
    if not isinstance(body_doc, dict):
        raise click.UsageError("--patch must be an object")

    async def body(client: ApiClient, target: Target) -> None:
        before = await client.get_by_name(info.kind, name, ns_for(info, target))
        out: Message = await client.patch(
            info.kind,
            name,
            body_doc,
            ns_for(info, target),
            status=subresource == "status",
            field_validation=field_validation,
        )
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
        obj = await client.get_by_name(info.kind, wanted[0], ns_for(info, target))
        if current_replicas is not None and obj.spec.replicas != current_replicas:  # type: ignore[attr-defined]
            fail(f"expected {current_replicas} replicas, found {obj.spec.replicas}")  # type: ignore[attr-defined]
        patch_doc = {"spec": {"replicas": replicas}, "metadata": {"resourceVersion": meta(obj).resource_version}}
        out: Message = await client.patch(info.kind, wanted[0], patch_doc, ns_for(info, target))
        click.echo(f"{_ref(out)} scaled")

    run(body)


@click.command()
@click.argument("kind", shell_complete=complete_kind)
@click.argument("name", shell_complete=complete_name)
@namespace_option
@click.option("--min", "minimum", type=click.IntRange(min=1), default=None, help="Fewest replicas (default 1).")
@click.option("--max", "maximum", type=click.IntRange(min=1), required=True, help="Most replicas.")
@click.option(
    "--cpu-percent",
    type=click.IntRange(min=1),
    default=None,
    help="Target average CPU use, in percent of the pods' requests (default 80).",
)
@click.option("--name", "hpa_name", default="", help="Name of the HorizontalPodAutoscaler (default: NAME).")
def autoscale(kind: str, name: str, minimum: int | None, maximum: int, cpu_percent: int | None, hpa_name: str) -> None:
    """Create a HorizontalPodAutoscaler for a Deployment, StatefulSet or ReplicaSet (as kubectl autoscale)."""
    info, wanted = split_kind_names(kind, (name,))
    if info.kind not in ("Deployment", "StatefulSet", "ReplicaSet") or len(wanted) != 1:
        raise click.UsageError("autoscale takes one deployment, statefulset or replicaset")
    if minimum is not None and minimum > maximum:
        raise click.UsageError(f"--min {minimum} is larger than --max {maximum}")

    async def body(client: ApiClient, target: Target) -> None:
        ns = ns_for(info, target)
        await client.get_by_name(info.kind, wanted[0], ns)  # it must exist, as kubectl checks
        hpa = autoscaling_pb2.HorizontalPodAutoscaler(api_version="autoscaling/v2", kind="HorizontalPodAutoscaler")
        hpa.metadata.name, hpa.metadata.namespace = hpa_name or wanted[0], ns
        spec = hpa.spec
        spec.scale_target_ref.kind, spec.scale_target_ref.name = info.kind, wanted[0]
        spec.scale_target_ref.api_version = "apps/v1"
        if minimum is not None:
            spec.min_replicas = minimum
        spec.max_replicas = maximum
        metric = spec.metrics.add(type="Resource")
        metric.resource.name = "cpu"
        metric.resource.target.type = "Utilization"
        metric.resource.target.average_utilization = cpu_percent or 80
        out = await client.create(hpa)
        click.echo(f"horizontalpodautoscaler.autoscaling/{out.metadata.name} autoscaled")

    run(body)
