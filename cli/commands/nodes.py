"""Node operations: cordon, uncordon, drain, and top (metrics)."""

from __future__ import annotations

import asyncio
import time

import click

from cli.config import Target
from cli.context import fail, not_available, run
from cli.kinds_args import complete_name
from controlplane.api.errors import ConflictError, NotFoundError, TooManyRequestsError
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


EVICTION_RETRY_SECONDS = 2.0
"""How long drain waits before asking again for an eviction a disruption budget refused (kubectl: 5 s)."""


@click.command()
@click.argument("node", shell_complete=complete_name)
@click.option("--ignore-daemonsets", is_flag=True, help="Leave DaemonSet pods (they would come back anyway).")
@click.option("--force", is_flag=True, help="Also delete pods that no controller owns (they will not come back).")
@click.option("--grace-period", type=int, default=None, help="Seconds for each pod to stop (default: the pod's).")
@click.option("--timeout", type=float, default=300.0, help="Seconds to wait for the node to be drained.")
@click.option(
    "--deadline",
    type=float,
    default=None,
    help="Seconds after which pods still held by a disruption budget are deleted anyway (as Nomad's drain -deadline).",
)
@click.option("--disable-eviction", is_flag=True, help="Delete pods instead of evicting them (ignores budgets).")
def drain(
    node: str,
    ignore_daemonsets: bool,
    force: bool,
    grace_period: int | None,
    timeout: float,
    deadline: float | None,
    disable_eviction: bool,
) -> None:
    """Cordon a node and evict its pods through their disruption budgets, waiting until they are gone. An
    eviction a budget refuses is asked again every few seconds; after --deadline the rest are deleted."""

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
        started = time.monotonic()
        force_after = started + deadline if deadline is not None else None
        try:
            async with asyncio.timeout(timeout):
                await asyncio.gather(
                    *(_drain_pod(client, p, grace_period, disable_eviction, force_after) for p in victims)
                )
        except TimeoutError:
            left = []
            for p in victims:
                try:
                    await client.get(core_pb2.Pod, p.metadata.name, p.metadata.namespace)
                    left.append(f"{p.metadata.namespace}/{p.metadata.name}")
                except NotFoundError:
                    pass
            fail(
                f"timed out after {timeout:.0f}s draining node {node}: still there: {', '.join(left)} "
                "(held by a disruption budget, or the node's agent is not running; see --deadline)"
            )
        click.echo(f"node/{node} drained")

    run(body)


async def _drain_pod(
    client: ApiClient, pod: core_pb2.Pod, grace: int | None, disable_eviction: bool, force_after: float | None
) -> None:
    """Evict (or delete) one pod, asking again while a budget refuses, then wait until it is gone."""
    ns, name, uid = pod.metadata.namespace, pod.metadata.name, pod.metadata.uid
    refused = False
    while True:
        try:
            if disable_eviction:
                await client.delete(core_pb2.Pod, name, ns, grace_period_seconds=grace, uid=uid)
                click.echo(f"pod/{name} deleted")
            else:
                await client.evict(name, ns, grace_period_seconds=grace, uid=uid)
                click.echo(f"evicting pod {ns}/{name}")
            break
        except NotFoundError:
            return
        except ConflictError:
            return  # a new pod of the same name: this one is gone
        except TooManyRequestsError as err:
            if force_after is not None and time.monotonic() >= force_after:
                click.echo(f"deadline passed: deleting pod {ns}/{name} despite its disruption budget")
                try:
                    await client.delete(core_pb2.Pod, name, ns, grace_period_seconds=grace, uid=uid)
                except (NotFoundError, ConflictError):
                    return
                break
            if not refused:
                click.echo(
                    f'error when evicting pods/"{name}" -n "{ns}" (will retry after {EVICTION_RETRY_SECONDS:.0f}s): '
                    f"{err.message}",
                    err=True,
                )
                refused = True
            await asyncio.sleep(EVICTION_RETRY_SECONDS)
    delay = 0.1
    while True:
        try:
            current = await client.get(core_pb2.Pod, name, ns)
        except NotFoundError:
            break
        if current.metadata.uid != uid:
            break
        await asyncio.sleep(delay)
        delay = min(delay * 2, 2.0)
    click.echo(f"pod/{name} evicted")


@click.command()
@click.argument("what", type=click.Choice(["nodes", "node", "pods", "pod"]))
def top(what: str) -> None:
    """Show CPU and memory use of nodes or pods."""
    not_available(f"navarch top {what}", "resource metrics reported by the node agents")
