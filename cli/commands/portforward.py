"""``navarch port-forward POD|pod/NAME|svc/NAME [LOCAL:]REMOTE...``: local TCP ports relayed to a pod's ports
through the API server (one gRPC stream per connection, so any number of connections at once).

For a Service the first ready endpoint's pod is used, and REMOTE is the Service's port, mapped to that pod's
target port (a named or node-allocated port included), as kubectl does.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator

import click

from cli.commands.common import namespace_option
from cli.config import Target
from cli.context import run
from cli.kinds_args import complete_name
from controlplane.api.errors import ApiError, InvalidError, PreconditionError
from controlplane.api.pb import core_pb2
from controlplane.client.client import ApiClient


def parse_ports(specs: tuple[str, ...]) -> list[tuple[int, int]]:
    """``[LOCAL:]REMOTE`` pairs (LOCAL 0 or empty: any free port)."""
    out = []
    for spec in specs:
        local, sep, remote = spec.rpartition(":")
        if not sep:
            local = remote
        try:
            pair = (int(local or 0), int(remote))
        except ValueError:
            raise click.BadParameter(f"{spec!r}: expected [LOCAL:]REMOTE port numbers", param_hint="PORTS") from None
        if not (0 <= pair[0] <= 65535 and 1 <= pair[1] <= 65535):
            raise click.BadParameter(f"{spec!r}: ports must be within 1-65535", param_hint="PORTS")
        out.append(pair)
    return out


async def resolve(client: ApiClient, namespace: str, target: str, remotes: list[int]) -> tuple[str, list[int]]:
    """The pod to forward to and, per requested remote port, the pod's port."""
    kind, sep, name = target.partition("/")
    if not sep:
        kind, name = "pod", target
    kind = kind.lower()
    if kind in ("pod", "pods", "po"):
        return name, remotes
    if kind not in ("svc", "service", "services"):
        raise InvalidError(f"port-forward: {target!r}: expected POD, pod/NAME or svc/NAME")
    svc = await client.get(core_pb2.Service, name, namespace)
    ep = await client.get(core_pb2.Endpoints, name, namespace)
    for subset in ep.subsets:
        for address in subset.addresses:
            if address.target_ref.kind != "Pod":
                continue
            mapped = []
            for remote in remotes:
                sp = next((p for p in svc.spec.ports if p.port == remote), None)
                if sp is None:
                    raise InvalidError(f'service "{name}" has no port {remote}')
                port = next((p.port for p in subset.ports if p.name == sp.name), None)
                if port is None:
                    raise PreconditionError(f'service "{name}": port {remote} has no endpoint port')
                mapped.append(port)
            return address.target_ref.name, mapped
    raise PreconditionError(f'service "{name}" has no ready endpoints')


async def _relay(
    client: ApiClient, pod: str, port: int, namespace: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    async def sent() -> AsyncIterator[bytes]:
        while chunk := await reader.read(64 * 1024):
            yield chunk

    try:
        async for chunk in client.port_forward(pod, port, sent(), namespace):
            writer.write(chunk)
            await writer.drain()
    except ApiError as err:
        click.echo(f"error: port-forward to {pod}:{port}: {err.message}", err=True)
    except (ConnectionError, OSError):
        pass  # the local client went away
    finally:
        writer.close()


@click.command(name="port-forward")
@click.argument("target", shell_complete=complete_name)
@click.argument("ports", nargs=-1, required=True)
@namespace_option
@click.option("--address", default="127.0.0.1", show_default=True, help="Local address to listen on.")
def port_forward(target: str, ports: tuple[str, ...], address: str) -> None:
    """Forward local ports to a pod (or a Service's pod) until interrupted: navarch port-forward web-x 8080:80."""
    pairs = parse_ports(ports)

    async def body(client: ApiClient, ctx: Target) -> int:
        namespace = ctx.namespace
        pod, remotes = await resolve(client, namespace, target, [r for _, r in pairs])
        await client.get(core_pb2.Pod, pod, namespace)  # a missing pod fails now, not at the first connection
        servers = []
        for (local, shown), remote in zip(pairs, remotes, strict=True):

            async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, remote: int = remote) -> None:
                await _relay(client, pod, remote, namespace, reader, writer)

            server = await asyncio.start_server(handle, address, local)
            servers.append(server)
            bound = server.sockets[0].getsockname()[1]
            click.echo(f"Forwarding from {address}:{bound} -> {shown}")
            sys.stdout.flush()
        try:
            await asyncio.gather(*(s.serve_forever() for s in servers))
        finally:
            for s in servers:
                s.close()
        return 0

    sys.exit(run(body))
