"""``navarch delete``: by file, name, selector or ``--all``; cascading, grace periods, ``--wait``, dry runs."""

from __future__ import annotations

import asyncio
import time

import click
from google.protobuf.message import Message

from cli import printers
from cli.commands.common import DURATION, dry_run_option, load_documents, namespace_option, ns_for
from cli.config import Target
from cli.context import fail, run
from cli.kinds_args import complete_kind, complete_name, split_kind_names
from controlplane.api import fieldvalidation, kinds
from controlplane.api.errors import NotFoundError
from controlplane.api.objects import meta
from controlplane.client.client import ApiClient, ObjectList


def _kind_word(info: kinds.KindInfo) -> str:
    """``deployment.apps`` as delete prints it."""
    group = info.group.split("/")[0]
    return f"{info.kind.lower()}{'.' + group if group else ''}"


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
@click.option("--timeout", type=DURATION, default=60.0, help="How long to wait with --wait (e.g. 60s).")
@click.option("--ignore-not-found", is_flag=True)
@dry_run_option
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
    dry_run: str,
) -> None:
    """Delete objects by file, by name, by selector or all of a kind."""
    if not filenames and not kind:
        raise click.UsageError("give -f FILE or KIND [NAME...]")

    async def body(client: ApiClient, target: Target) -> None:
        todo: list[tuple[kinds.KindInfo, str, str]] = []
        if filenames:
            for doc in load_documents(filenames, recursive, target, fieldvalidation.IGNORE):
                info = kinds.of_message(doc.obj)
                todo.append(
                    (info, meta(doc.obj).namespace or (target.namespace if info.namespaced else ""), meta(doc.obj).name)
                )
        else:
            assert kind is not None
            info, wanted = split_kind_names(kind, names)
            ns = ns_for(info, target)
            if wanted:
                todo += [(info, ns, n) for n in wanted]
            elif all_ or selector:
                listed: ObjectList[Message] = await client.list(info.kind, ns, label_selector=selector)
                todo += [(info, ns, meta(o).name) for o in listed.items]
            else:
                raise click.UsageError("give NAME..., --all or -l SELECTOR")
        policy = {"background": "Background", "foreground": "Foreground", "orphan": "Orphan"}[cascade]
        pending: list[tuple[kinds.KindInfo, str, str]] = []
        if dry_run == "client":  # nothing is sent: say what would be deleted
            for info, _ns, name in todo:
                click.echo(f'{_kind_word(info)} "{name}" deleted (dry run)')
            return
        for info, ns, name in todo:
            try:
                obj: Message
                obj, _gone = await client.delete(
                    info.kind,
                    name,
                    ns,
                    grace_period_seconds=grace_period,
                    propagation_policy=policy,
                    dry_run=dry_run == "server",
                )
            except NotFoundError:
                if ignore_not_found:
                    continue
                raise
            suffix = " (server dry run)" if dry_run == "server" else ""
            click.echo(f'{printers.name(obj).split("/")[0]} "{name}" deleted{suffix}')
            pending.append((info, ns, name))
        if wait and dry_run == "none":
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
