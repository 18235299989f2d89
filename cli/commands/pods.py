"""Pod access through the API server and the node agents: logs and exec."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import termios
import tty as tty_module
from collections.abc import AsyncIterator

import click

from cli.commands.common import DURATION, namespace_option
from cli.config import Target
from cli.context import fail, run
from cli.kinds_args import complete_name, resolve_pod
from controlplane.api.pb import core_pb2, podaccess_pb2
from controlplane.client.client import ApiClient


def _write(data: bytes) -> None:
    sys.stdout.buffer.write(data)
    sys.stdout.buffer.flush()


def _prefixed(prefix: bytes, data: bytes) -> bytes:
    return b"".join(prefix + line for line in data.splitlines(keepends=True))


@click.command()
@click.argument("pod", required=False, shell_complete=complete_name)
@namespace_option
@click.option("-c", "--container", default="", help="The container (default: the only one).")
@click.option("-l", "--selector", default="", help="Logs of every pod matching this label selector.")
@click.option("-f", "--follow", is_flag=True, help="Keep printing new lines until the container ends for good.")
@click.option("--tail", type=int, default=-1, help="Lines from the end to show (-1: all).")
@click.option("--previous", "-p", is_flag=True, help="The previous (terminated) run of the container.")
@click.option("--timestamps", is_flag=True, help="Prefix each line with its time.")
@click.option("--since", type=DURATION, default=None, help="Only lines newer than this (e.g. 5m).")
@click.option("--prefix/--no-prefix", default=None, help="Prefix lines with the pod name (default: with -l).")
@click.option(
    "--limit-bytes", type=click.IntRange(min=1), default=None, help="Stop after this many bytes (per container)."
)
def logs(
    pod: str | None,
    container: str,
    selector: str,
    follow: bool,
    tail: int,
    previous: bool,
    timestamps: bool,
    since: float | None,
    prefix: bool | None,
    limit_bytes: int | None,
) -> None:
    """Print a container's logs (navarch logs POD, navarch logs deploy/web: one of its pods, or navarch logs -l
    app=web: all of them)."""
    if bool(pod) == bool(selector):
        fail("give either a pod name or a label selector (-l)")

    async def stream(client: ApiClient, namespace: str, name: str, label: bytes) -> None:
        async for chunk in client.pod_logs(
            name,
            namespace,
            container=container,
            follow=follow,
            tail_lines=None if tail < 0 else tail,
            previous=previous,
            timestamps=timestamps,
            since_seconds=int(since or 0),
            limit_bytes=limit_bytes,
        ):
            _write(_prefixed(label, chunk) if label else chunk)

    async def body(client: ApiClient, target: Target) -> None:
        namespace = target.namespace
        if pod:
            name = await resolve_pod(client, namespace, pod)
            await stream(client, namespace, name, f"[pod/{name}] ".encode() if prefix else b"")
            return
        listed = await client.list(core_pb2.Pod, namespace, label_selector=selector)
        names = sorted(p.metadata.name for p in listed.items if p.spec.node_name)
        if not names:
            click.echo(f"No scheduled pods match {selector} in namespace {namespace}.", err=True)
            return
        show = prefix is None or prefix
        await asyncio.gather(*(stream(client, namespace, n, f"[pod/{n}] ".encode() if show else b"") for n in names))

    run(body)


async def _stdin_chunks() -> AsyncIterator[bytes]:
    fd = sys.stdin.fileno()
    while chunk := await asyncio.to_thread(os.read, fd, 64 * 1024):
        yield chunk


@click.command(name="exec", context_settings={"ignore_unknown_options": True})
@click.argument("pod", shell_complete=complete_name)
@namespace_option
@click.option("-c", "--container", default="", help="The container (default: the only one).")
@click.option("-i", "--stdin", "interactive", is_flag=True, help="Pass standard input to the command.")
@click.option("-t", "--tty", is_flag=True, help="Run on a terminal (with -i: an interactive shell, Ctrl-C, resize).")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
def exec_(pod: str, container: str, interactive: bool, tty: bool, command: tuple[str, ...]) -> None:
    """Run a command in a pod's container (navarch exec POD -- CMD..., or deploy/web: one of its pods); exits
    with the command's code."""
    if tty and not os.isatty(sys.stdin.fileno()):
        click.echo("Unable to use a TTY - input is not a terminal or the right kind of file", err=True)
        tty = False

    async def body(client: ApiClient, target: Target) -> int:
        code = 1
        size = terminal_size() if tty else None
        inputs = _terminal_inputs() if tty and interactive else _stdin_chunks() if interactive else None
        name = await resolve_pod(client, target.namespace, pod)
        async for frame in client.pod_exec(
            name, command, target.namespace, container=container, stdin=inputs, tty=size
        ):
            kind = frame.WhichOneof("frame")
            if kind == "stdout":
                _write(frame.stdout)
            elif kind == "stderr":
                sys.stderr.buffer.write(frame.stderr)
                sys.stderr.buffer.flush()
            elif kind == "exit_code":
                code = frame.exit_code
        return code

    if not tty or not interactive:
        sys.exit(run(body))
    saved = termios.tcgetattr(sys.stdin.fileno())
    try:
        tty_module.setraw(sys.stdin.fileno())  # keys go to the remote terminal as typed (Ctrl-C included)
        code = run(body)
    finally:
        termios.tcsetattr(sys.stdin.fileno(), termios.TCSADRAIN, saved)
    sys.exit(code)


def terminal_size() -> podaccess_pb2.TerminalSize:
    """The local terminal's window size (80x24 if it cannot be read)."""
    try:
        cols, rows = os.get_terminal_size(sys.stdin.fileno())
    except OSError:
        cols, rows = 80, 24
    return podaccess_pb2.TerminalSize(rows=rows, cols=cols)


async def _terminal_inputs() -> AsyncIterator[bytes | podaccess_pb2.TerminalSize]:
    """Keys as typed and, on SIGWINCH, the window's new size, in the order they happen."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[bytes | podaccess_pb2.TerminalSize | None] = asyncio.Queue()
    fd = sys.stdin.fileno()

    def key() -> None:
        # Read by the event loop, not a thread: a thread blocked on the terminal would hold the exit until
        # the next key press once the remote command has ended.
        try:
            data = os.read(fd, 64 * 1024)
        except OSError:
            data = b""
        if not data:
            loop.remove_reader(fd)
        queue.put_nowait(data or None)

    loop.add_signal_handler(signal.SIGWINCH, lambda: queue.put_nowait(terminal_size()))
    loop.add_reader(fd, key)
    try:
        while (item := await queue.get()) is not None:
            yield item
    finally:
        loop.remove_signal_handler(signal.SIGWINCH)
        loop.remove_reader(fd)
