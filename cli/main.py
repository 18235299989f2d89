"""``navarch``: the command line. Today it has ``version``; the kubectl-like verbs arrive with their issue."""

from __future__ import annotations

from importlib.metadata import version as dist_version

import click


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """Operate a Navarch cluster."""


@main.command()
def version() -> None:
    """Print the client version."""
    click.echo(f"navarch {dist_version('navarch')}")
