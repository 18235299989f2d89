"""Node operations: cordon, uncordon, drain, and top (metrics)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping

import click

from cli.commands.common import DURATION, namespace_option
from cli.config import Target
from cli.context import fail, run
from cli.kinds_args import complete_name
from controlplane.api.errors import ConflictError, NotFoundError, TooManyRequestsError
from controlplane.api.pb import core_pb2
from controlplane.api.quantity import parse_quantity
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
@click.option("--timeout", type=DURATION, default=300.0, help="How long to wait for the node to be drained (e.g. 5m).")
@click.option(
    "--deadline",
    type=DURATION,
    default=None,
    help="After how long (e.g. 5m) pods still held by a disruption budget are deleted anyway (Nomad's -deadline).",
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


def _table(rows: list[tuple[str, ...]]) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        click.echo("   ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip())


def _cpu(usage: Mapping[str, str]) -> float | None:
    text = usage.get("cpu")
    return float(parse_quantity(text)) if text else None


def _memory(usage: Mapping[str, str]) -> int:
    text = usage.get("memory")
    return int(parse_quantity(text)) if text else 0


def _cores_text(cores: float | None) -> str:
    return "<unknown>" if cores is None else f"{round(cores * 1000)}m"


def _bytes_text(n: int) -> str:
    return f"{n // (1024 * 1024)}Mi"


@click.command()
@click.argument("what", type=click.Choice(["nodes", "node", "no", "pods", "pod", "po"]))
@click.argument("name", required=False, default="")
@namespace_option
@click.option("-A", "--all-namespaces", is_flag=True, help="Pods of every namespace.")
@click.option("-l", "--selector", default="", help="Label selector, e.g. app=web.")
@click.option("--containers", is_flag=True, help="One line per container (pods).")
@click.option("--sort-by", type=click.Choice(["cpu", "memory"]), default=None, help="Largest first.")
@click.option("--no-headers", is_flag=True, help="Print the table without its header line.")
def top(
    what: str,
    name: str,
    all_namespaces: bool,
    selector: str,
    containers: bool,
    sort_by: str | None,
    no_headers: bool,
) -> None:
    """Show what nodes or pods use now (CPU in millicores, memory working set), as the agents sampled it
    (every 10 s by default; a container's CPU shows once it has two samples)."""

    async def nodes_body(client: ApiClient, target: Target) -> None:
        listed = await client.node_metrics(name, label_selector=selector)
        if not listed.items:
            fail(
                "metrics not available yet"
                + (f" (no answer from {', '.join(listed.unavailable)})" if listed.unavailable else "")
            )
        allocatable: dict[str, tuple[float, int]] = {}
        for node in (await client.list(core_pb2.Node, label_selector=selector)).items:
            a = node.status.allocatable
            allocatable[node.metadata.name] = (
                float(parse_quantity(a["cpu"])) if a.get("cpu") else 0.0,
                int(parse_quantity(a["memory"])) if a.get("memory") else 0,
            )
        items = list(listed.items)
        if sort_by:
            items.sort(key=lambda m: (_cpu(m.usage) or 0.0) if sort_by == "cpu" else _memory(m.usage), reverse=True)
        rows: list[tuple[str, ...]] = (
            [] if no_headers else [("NAME", "CPU(cores)", "CPU(%)", "MEMORY(bytes)", "MEMORY(%)")]
        )
        for m in items:
            cpu, mem = _cpu(m.usage), _memory(m.usage)
            total_cpu, total_mem = allocatable.get(m.metadata.name, (0.0, 0))
            cpu_pct = f"{round(100 * cpu / total_cpu)}%" if cpu is not None and total_cpu else "<unknown>"
            mem_pct = f"{round(100 * mem / total_mem)}%" if total_mem else "<unknown>"
            rows.append((m.metadata.name, _cores_text(cpu), cpu_pct, _bytes_text(mem), mem_pct))
        for missing in listed.unavailable:
            rows.append((missing, "<unknown>", "<unknown>", "<unknown>", "<unknown>"))
        if rows:
            _table(rows)

    async def pods_body(client: ApiClient, target: Target) -> None:
        ns = "" if all_namespaces else target.namespace
        listed = await client.pod_metrics(ns, name, label_selector=selector)
        if not listed.items:
            where = "" if all_namespaces else f" in namespace {target.namespace}"
            fail(f"metrics not available yet{where}")
        prefix: tuple[str, ...] = ("NAMESPACE",) if all_namespaces else ()
        if containers:
            header: tuple[str, ...] = (*prefix, "POD", "NAME", "CPU(cores)", "MEMORY(bytes)")
            lines = [
                (
                    (m.metadata.namespace,) if all_namespaces else (),
                    m.metadata.name,
                    c.name,
                    _cpu(c.usage),
                    _memory(c.usage),
                )
                for m in listed.items
                for c in m.containers
            ]
        else:
            header = (*prefix, "NAME", "CPU(cores)", "MEMORY(bytes)")
            lines = []
            for m in listed.items:
                cpus = [_cpu(c.usage) for c in m.containers]
                cpu = None if any(v is None for v in cpus) else sum(v for v in cpus if v is not None)
                mem = sum(_memory(c.usage) for c in m.containers)
                lines.append(((m.metadata.namespace,) if all_namespaces else (), m.metadata.name, "", cpu, mem))
        if sort_by:
            lines.sort(key=lambda r: (r[3] or 0.0) if sort_by == "cpu" else r[4], reverse=True)
        rows: list[tuple[str, ...]] = [] if no_headers else [header]
        for ns_col, pod, container, cpu, mem in lines:
            names = (pod, container) if containers else (pod,)
            rows.append((*ns_col, *names, _cores_text(cpu), _bytes_text(mem)))
        if rows:
            _table(rows)

    run(nodes_body if what in ("nodes", "node", "no") else pods_body)
