"""``navarch describe``: each object as a human summary (cli.describers), its recent events last."""

from __future__ import annotations

import click
from google.protobuf.message import Message

from cli import describers, printers
from cli.commands.common import namespace_option, ns_for
from cli.config import Target
from cli.context import run
from cli.kinds_args import complete_kind, complete_name, split_kind_names
from controlplane.api import kinds
from controlplane.api.errors import NotFoundError
from controlplane.api.objects import meta
from controlplane.api.pb import core_pb2
from controlplane.client.client import ApiClient

MAX_EVENTS = 20


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


async def _related(client: ApiClient, obj: Message) -> list[str]:
    """Lines that need other objects: a Service's endpoints, a Deployment's ReplicaSets, a Node's pods."""
    info, m = kinds.of_message(obj), meta(obj)
    if info.kind == "Service":
        return [describers.field("Endpoints", ", ".join(await _endpoint_addresses(client, m.namespace, m.name)))]
    if info.kind == "Deployment":
        owned = [
            rs
            for rs in (await client.list("ReplicaSet", m.namespace)).items
            if any(ref.uid == m.uid for ref in meta(rs).owner_references)
        ]
        newest = max(owned, key=lambda rs: meta(rs).creation_timestamp.ToNanoseconds(), default=None)
        old = [rs for rs in owned if rs is not newest and rs.spec.replicas]  # type: ignore[attr-defined]

        def fmt(rs: Message) -> str:
            return f"{meta(rs).name} ({rs.status.replicas}/{rs.spec.replicas} replicas created)"  # type: ignore[attr-defined]

        return [
            describers.field("OldReplicaSets", ", ".join(fmt(rs) for rs in old) or "<none>"),
            describers.field("NewReplicaSet", fmt(newest) if newest is not None else "<none>"),
        ]
    if info.kind == "Node":
        pods = (await client.list("Pod", "", field_selector=f"spec.nodeName={m.name}")).items
        running = [p for p in pods if p.status.phase not in ("Succeeded", "Failed")]  # type: ignore[attr-defined]
        rows = [(meta(p).namespace, meta(p).name, printers.age(meta(p).creation_timestamp)) for p in running]
        return [
            f"Non-terminated Pods:          ({len(running)} in total)",
            *describers.table(("Namespace", "Name", "Age"), rows),
        ]
    return []


def _events(events: list[Message]) -> list[str]:
    if not events:
        return [describers.field("Events", "<none>")]
    rows = []
    for e in events:
        last = e.last_timestamp if e.last_timestamp.seconds else meta(e).creation_timestamp  # type: ignore[attr-defined]
        count = e.count if e.count > 1 else 1  # type: ignore[attr-defined]
        when = printers.age(last) + (f" (x{count} over {printers.age(e.first_timestamp)})" if count > 1 else "")  # type: ignore[attr-defined]
        rows.append((e.type, e.reason, when, e.source.component or "", e.message))  # type: ignore[attr-defined]
    return ["Events:", *describers.table(("Type", "Reason", "Age", "From", "Message"), rows)]


@click.command()
@click.argument("kind", shell_complete=complete_kind)
@click.argument("names", nargs=-1, required=False, shell_complete=complete_name)
@namespace_option
@click.option("-l", "--selector", default="", help="Describe the objects this label selector matches.")
def describe(kind: str, names: tuple[str, ...], selector: str) -> None:
    """Show details of objects as a human summary, with their recent events."""
    info, wanted = split_kind_names(kind, names)

    async def body(client: ApiClient, target: Target) -> None:
        ns = ns_for(info, target)
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
            lines = [*describers.describe(obj), *await _related(client, obj), *_events(events[-MAX_EVENTS:])]
            for line in lines:
                click.echo(line)

    run(body)
