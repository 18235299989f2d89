"""Node operations: cordon, uncordon, drain, and top (metrics)."""

from __future__ import annotations

import asyncio
import time

import click

from cli.config import Target
from cli.context import fail, not_available, run
from cli.kinds_args import complete_name
from controlplane.api.errors import NotFoundError
from controlplane.api.pb import core_pb2
from controlplane.client.client import ApiClient


async def _set_unschedulable(client: ApiClient, node: str, value: bool) -> bool:
    n = await client.get(core_pb2.Node, node)
    if n.spec.unschedulable == value:
        return False
    await client.patch(
        core_pb2.Node,
        node,
        {"spec": {"unschedulable": value}, "metadata": {"resourceVersion": n.metadata.resource_version}},
    )
    return True


@click.command()
@click.argument("node", shell_complete=complete_name)
def cordon(node: str) -> None:
    """Mark a node unschedulable."""

    async def body(client: ApiClient, target: Target) -> None:
        changed = await _set_unschedulable(client, node, True)
        click.echo(f"node/{node} {'cordoned' if changed else 'already cordoned'}")

    run(body)


@click.command()
@click.argument("node", shell_complete=complete_name)
def uncordon(node: str) -> None:
    """Mark a node schedulable again."""

    async def body(client: ApiClient, target: Target) -> None:
        changed = await _set_unschedulable(client, node, False)
        click.echo(f"node/{node} {'uncordoned' if changed else 'already uncordoned'}")

    run(body)


@click.command()
@click.argument("node", shell_complete=complete_name)
@click.option("--ignore-daemonsets", is_flag=True, help="Leave DaemonSet pods (they would come back anyway).")
@click.option("--force", is_flag=True, help="Also delete pods that no controller owns (they will not come back).")
@click.option("--grace-period", type=int, default=None, help="Seconds for each pod to stop (default: the pod's).")
@click.option("--timeout", type=float, default=300.0, help="Seconds to wait for the pods to go.")
def drain(node: str, ignore_daemonsets: bool, force: bool, grace_period: int | None, timeout: float) -> None:
    """Cordon a node and delete its pods, waiting until they are gone."""

    async def body(client: ApiClient, target: Target) -> None:
        await _set_unschedulable(client, node, True)
        click.echo(f"node/{node} cordoned")
        pods = (await client.list(core_pb2.Pod, "", field_selector=f"spec.nodeName={node}")).items
        daemon = [p for p in pods if any(r.kind == "DaemonSet" and r.controller for r in p.metadata.owner_references)]
        bare = [p for p in pods if not any(r.controller for r in p.metadata.owner_references)]
        if daemon and not ignore_daemonsets:
            names = ", ".join(f"{p.metadata.namespace}/{p.metadata.name}" for p in daemon)
            fail(f"cannot delete DaemonSet-managed pods (use --ignore-daemonsets): {names}")
        if bare and not force:
            names = ", ".join(f"{p.metadata.namespace}/{p.metadata.name}" for p in bare)
            fail(f"cannot delete pods that no controller manages (use --force): {names}")
        victims = [p for p in pods if p not in daemon]
        for p in victims:
            try:
                await client.delete(
                    core_pb2.Pod, p.metadata.name, p.metadata.namespace, grace_period_seconds=grace_period
                )
                click.echo(f"evicting pod {p.metadata.namespace}/{p.metadata.name}")
            except NotFoundError:
                pass
        deadline = time.monotonic() + timeout
        delay = 0.1
        for p in victims:
            while True:
                try:
                    await client.get(core_pb2.Pod, p.metadata.name, p.metadata.namespace)
                except NotFoundError:
                    click.echo(f"pod/{p.metadata.name} evicted")
                    break
                if time.monotonic() > deadline:
                    fail(
                        f"timed out after {timeout:.0f}s waiting for pod {p.metadata.namespace}/{p.metadata.name} "
                        "to go (is the node's agent running?)"
                    )
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
        click.echo(f"node/{node} drained")

    run(body)


@click.command()
@click.argument("what", type=click.Choice(["nodes", "node", "pods", "pod"]))
def top(what: str) -> None:
    """Show CPU and memory use of nodes or pods."""
    not_available(f"navarch top {what}", "resource metrics reported by the node agents")
