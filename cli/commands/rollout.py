"""``navarch rollout status|history|undo|restart|pause|resume deployment NAME``."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime

import click

from cli.commands.common import DURATION, namespace_option
from cli.config import Target
from cli.context import fail, run
from cli.kinds_args import complete_name, split_kind_names
from controlplane.api.objects import meta
from controlplane.api.pb import apps_pb2
from controlplane.client.client import ApiClient

REVISION = "deployment.kubernetes.io/revision"
CHANGE_CAUSE = "kubernetes.io/change-cause"


def _deployment_name(kind: str, name: str | None) -> str:
    info, names = split_kind_names(kind, (name,) if name else ())
    if info.kind != "Deployment" or len(names) != 1:
        raise click.UsageError("rollout works on one deployment: navarch rollout status deployment NAME")
    return names[0]


def rollout_state(d: apps_pb2.Deployment) -> tuple[bool, str, bool]:
    """(done, message, failed) for a Deployment, as kubectl's rollout status reads it."""
    name = d.metadata.name
    if d.metadata.generation > d.status.observed_generation:
        return False, f'Waiting for deployment "{name}" spec update to be observed...', False
    for c in d.status.conditions:
        if c.type == "Progressing" and c.reason == "ProgressDeadlineExceeded":
            return False, f'deployment "{name}" exceeded its progress deadline', True
    want = d.spec.replicas
    if d.status.updated_replicas < want:
        return (
            False,
            (
                f'Waiting for deployment "{name}" rollout to finish: {d.status.updated_replicas} out of {want} '
                "new replicas have been updated..."
            ),
            False,
        )
    if d.status.replicas > d.status.updated_replicas:
        old = d.status.replicas - d.status.updated_replicas
        return (
            False,
            f'Waiting for deployment "{name}" rollout to finish: {old} old replicas are pending termination...',
            False,
        )
    if d.status.available_replicas < d.status.updated_replicas:
        return (
            False,
            (
                f'Waiting for deployment "{name}" rollout to finish: {d.status.available_replicas} of '
                f"{d.status.updated_replicas} updated replicas are available..."
            ),
            False,
        )
    return True, f'deployment "{name}" successfully rolled out', False


@click.group()
def rollout() -> None:
    """Manage the rollout of a Deployment."""


@rollout.command()
@click.argument("kind")
@click.argument("name", required=False, shell_complete=complete_name)
@namespace_option
@click.option("--timeout", type=DURATION, default=0, help="How long to wait (e.g. 60s, 5m; 0: until done or failed).")
@click.option("-w/--no-wait", "--watch/--no-watch", "wait", default=True, help="Wait for the rollout to finish.")
def status(kind: str, name: str | None, timeout: float, wait: bool) -> None:
    """Follow a rollout until it completes; exit non-zero if it stalls past its deadline."""
    dep = _deployment_name(kind, name)

    async def body(client: ApiClient, target: Target) -> None:
        deadline = time.monotonic() + timeout if timeout else None
        last = ""
        unobserved_since = time.monotonic()
        while True:
            d = await client.get(apps_pb2.Deployment, dep, target.namespace)
            done, message, failed = rollout_state(d)
            if message != last:
                click.echo(message)
                last = message
            if done:
                return
            if failed:
                fail(message, 1)
            if d.status.observed_generation == 0 and time.monotonic() - unobserved_since > 10:
                fail(
                    f'deployment "{dep}" has not been observed by a controller: is navarch-controller-manager running?'
                )
            if not wait:
                fail("rollout is not finished", 1)
            if deadline is not None and time.monotonic() > deadline:
                fail(f'timed out waiting for the rollout of deployment "{dep}" to finish')
            await asyncio.sleep(0.5)

    run(body)


@rollout.command()
@click.argument("kind")
@click.argument("name", required=False, shell_complete=complete_name)
@namespace_option
def history(kind: str, name: str | None) -> None:
    """List the revisions of a Deployment (one ReplicaSet per revision)."""
    dep = _deployment_name(kind, name)

    async def body(client: ApiClient, target: Target) -> None:
        d = await client.get(apps_pb2.Deployment, dep, target.namespace)
        sets = await client.list(apps_pb2.ReplicaSet, target.namespace)
        owned = [rs for rs in sets.items if any(r.uid == d.metadata.uid for r in rs.metadata.owner_references)]
        click.echo(f"deployment.apps/{dep}")
        click.echo("REVISION   CHANGE-CAUSE")
        for rs in sorted(owned, key=lambda r: int(r.metadata.annotations.get(REVISION, "0"))):
            rev = rs.metadata.annotations.get(REVISION, "?")
            click.echo(f"{rev:<11}{rs.metadata.annotations.get(CHANGE_CAUSE, '<none>')}")
        if not owned:
            click.echo("(no revisions yet: revisions are recorded by navarch-controller-manager)")

    run(body)


@rollout.command()
@click.argument("kind")
@click.argument("name", required=False, shell_complete=complete_name)
@namespace_option
@click.option("--to-revision", type=int, default=0, help="The revision to go back to (0: the previous one).")
def undo(kind: str, name: str | None, to_revision: int) -> None:
    """Roll a Deployment back to a previous revision's pod template."""
    dep = _deployment_name(kind, name)

    async def body(client: ApiClient, target: Target) -> None:
        d = await client.get(apps_pb2.Deployment, dep, target.namespace)
        sets = await client.list(apps_pb2.ReplicaSet, target.namespace)
        revisions = {
            int(rs.metadata.annotations.get(REVISION, "0")): rs
            for rs in sets.items
            if any(r.uid == d.metadata.uid for r in rs.metadata.owner_references)
        }
        current = int(d.metadata.annotations.get(REVISION, "0"))
        if to_revision:
            chosen = revisions.get(to_revision)
            if chosen is None:
                fail(f"unable to find the specified revision {to_revision}")
        else:
            older = sorted(r for r in revisions if r < current or not current)
            if not older:
                fail(f'no rollout history found for deployment "{dep}"')
            chosen = revisions[older[-1]]
        template = apps_pb2.Deployment().spec.template
        template.CopyFrom(chosen.spec.template)
        template.metadata.labels.pop("pod-template-hash", None)
        d.spec.template.CopyFrom(template)
        await client.update(d)
        click.echo(f"deployment.apps/{dep} rolled back")

    run(body)


def _patch_command(name: str, help_text: str, patch_for: object) -> click.Command:
    @rollout.command(name=name, help=help_text)
    @click.argument("kind")
    @click.argument("obj_name", metavar="NAME", required=False, shell_complete=complete_name)
    @namespace_option
    def command(kind: str, obj_name: str | None) -> None:
        dep = _deployment_name(kind, obj_name)

        async def body(client: ApiClient, target: Target) -> None:
            d = await client.get(apps_pb2.Deployment, dep, target.namespace)
            patch = patch_for(d)  # type: ignore[operator]
            if patch is None:
                click.echo(f"deployment.apps/{dep} already {name}d")
                return
            patch.setdefault("metadata", {})["resourceVersion"] = meta(d).resource_version
            await client.patch(apps_pb2.Deployment, dep, patch, target.namespace)
            click.echo(f"deployment.apps/{dep} {'restarted' if name == 'restart' else name + 'd'}")

        run(body)

    return command


restart = _patch_command(
    "restart",
    "Restart every pod of a Deployment (by changing its template).",
    lambda d: {
        "spec": {
            "template": {
                "metadata": {"annotations": {"navarch.io/restartedAt": datetime.now(UTC).isoformat(timespec="seconds")}}
            }
        }
    },
)
pause = _patch_command(
    "pause", "Pause a Deployment's rollout.", lambda d: None if d.spec.paused else {"spec": {"paused": True}}
)
resume = _patch_command(
    "resume",
    "Resume a paused Deployment's rollout.",
    lambda d: None if not d.spec.paused else {"spec": {"paused": False}},
)
