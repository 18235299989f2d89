"""Pod access through the node agents: logs and exec."""

from __future__ import annotations

import click

from cli.commands.common import namespace_option
from cli.context import not_available
from cli.kinds_args import complete_name


@click.command()
@click.argument("pod", shell_complete=complete_name)
@namespace_option
@click.option("-c", "--container", default="", help="The container (default: the only one).")
@click.option("-f", "--follow", is_flag=True, help="Keep printing new lines.")
@click.option("--tail", type=int, default=-1, help="Lines from the end to show (-1: all).")
@click.option("--previous", is_flag=True, help="The previous run of the container.")
@click.option("--timestamps", is_flag=True, help="Prefix each line with its time.")
def logs(pod: str, container: str, follow: bool, tail: int, previous: bool, timestamps: bool) -> None:
    """Print a container's logs."""
    not_available("navarch logs", "the node agent's log proxy through the API server")


@click.command(name="exec", context_settings={"ignore_unknown_options": True})
@click.argument("pod", shell_complete=complete_name)
@namespace_option
@click.option("-c", "--container", default="", help="The container (default: the only one).")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
def exec_(pod: str, container: str, command: tuple[str, ...]) -> None:
    """Run a command in a pod's container (navarch exec POD -- CMD...)."""
    not_available("navarch exec", "the node agent's exec proxy through the API server")
