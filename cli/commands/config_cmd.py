"""``navarch config``: view and edit the config file's clusters, users and contexts."""

from __future__ import annotations

from pathlib import Path

import click
import yaml

from cli import config as cfg
from cli.context import fail


@click.group(name="config")
def config_group() -> None:
    """View or change the CLI's config file (~/.navarch/config or $NAVARCH_CONFIG)."""


@config_group.command()
@click.option("--raw", is_flag=True, help="Show tokens instead of redacting them.")
def view(raw: bool) -> None:
    """Print the config file."""
    try:
        data = cfg.load()
    except cfg.ConfigError as err:
        fail(str(err))
    if not raw:
        for user in data.get("users", []):
            if isinstance(user, dict) and user.get("token"):
                user["token"] = "REDACTED"
    click.echo(yaml.safe_dump(data, sort_keys=False), nl=False)


@config_group.command(name="get-contexts")
def get_contexts() -> None:
    """List the contexts; * marks the current one."""
    data = cfg.load()
    rows = [("CURRENT", "NAME", "CLUSTER", "USER", "NAMESPACE")]
    for ctx in data.get("contexts", []):
        current = "*" if ctx.get("name") == data.get("current-context") else ""
        rows.append(
            (current, ctx.get("name", ""), ctx.get("cluster", ""), ctx.get("user", ""), ctx.get("namespace", ""))
        )
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    for r in rows:
        click.echo("   ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip())


@config_group.command(name="use-context")
@click.argument("name")
def use_context(name: str) -> None:
    """Make a context the current one."""
    data = cfg.load()
    if not any(c.get("name") == name for c in data.get("contexts", [])):
        fail(f'no context exists with the name: "{name}"')
    data["current-context"] = name
    cfg.save(data)
    click.echo(f'Switched to context "{name}".')


@config_group.command(name="set-context")
@click.argument("name", required=False)
@click.option("--current", is_flag=True, help="Change the current context.")
@click.option("--cluster", default=None)
@click.option("--user", default=None)
@click.option("--namespace", default=None)
def set_context(name: str | None, current: bool, cluster: str | None, user: str | None, namespace: str | None) -> None:
    """Create or change a context."""
    data = cfg.load()
    if current:
        name = data.get("current-context") or None
    if not name:
        fail("give a context name or --current (with a current context set)")
    existed = any(c.get("name") == name for c in data.get("contexts", []))
    cfg.upsert(data, "contexts", name, cluster=cluster, user=user, namespace=namespace)
    cfg.save(data)
    click.echo(f'Context "{name}" {"modified" if existed else "created"}.')


@config_group.command(name="set-cluster")
@click.argument("name")
@click.option("--server", required=True, help="Comma list of API server host:port.")
@click.option("--certificate-authority", default=None, help="The cluster CA (PEM): talk TLS to this cluster.")
@click.option("--tls-server-name", default=None, help="Name to check in the API servers' certificate.")
def set_cluster(name: str, server: str, certificate_authority: str | None, tls_server_name: str | None) -> None:
    """Create or change a cluster entry."""
    data = cfg.load()
    ca = str(Path(certificate_authority).resolve()) if certificate_authority else None
    cfg.upsert(data, "clusters", name, server=server, certificate_authority=ca, tls_server_name=tls_server_name)
    cfg.save(data)
    click.echo(f'Cluster "{name}" set.')


@config_group.command(name="set-credentials")
@click.argument("name")
@click.option("--token", default=None)
@click.option("--client-certificate", default=None)
@click.option("--client-key", default=None)
def set_credentials(name: str, token: str | None, client_certificate: str | None, client_key: str | None) -> None:
    """Create or change a user entry (token or client certificate)."""
    data = cfg.load()
    cert = str(Path(client_certificate).resolve()) if client_certificate else None
    key = str(Path(client_key).resolve()) if client_key else None
    cfg.upsert(data, "users", name, token=token, client_certificate=cert, client_key=key)
    cfg.save(data)
    click.echo(f'User "{name}" set.')
