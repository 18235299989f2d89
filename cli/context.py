"""What every command shares: the resolved target, a client factory, and error reporting."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, NoReturn, TypeVar

import click

from cli.config import ConfigError, Target, resolve
from controlplane.api.errors import ApiError, ConflictError, UnavailableError
from controlplane.client.client import ApiClient, ClientConfig

R = TypeVar("R")


@dataclass
class Options:
    """Global flags."""

    server: str | None = None
    context: str | None = None
    namespace: str | None = None
    request_timeout: float = 30.0

    def target(self) -> Target:
        """Flags combined with the config file."""
        return resolve(server=self.server, context=self.context, namespace=self.namespace)


def options() -> Options:
    """The global options of the running command."""
    ctx = click.get_current_context()
    obj = ctx.find_root().obj
    if not isinstance(obj, Options):
        obj = Options()
        ctx.find_root().obj = obj
    return obj


def fail(message: str, code: int = 1) -> NoReturn:
    """Print ``error: message`` (one line per line of the message) and exit non-zero."""
    for line in message.splitlines() or [""]:
        click.echo(f"error: {line}", err=True)
    sys.exit(code)


def warn(message: str) -> None:
    """Print a warning as kubectl does (``Warning: ...`` on stderr)."""
    click.echo(f"Warning: {message}", err=True)


def client_config(target: Target, **kwargs: Any) -> ClientConfig:
    """A ClientConfig for the target, with its TLS and token; the server's warnings are printed."""
    kwargs.setdefault("warning_handler", warn)
    return ClientConfig(endpoints=target.servers, tls=target.tls(), token=target.token, **kwargs)


def run(body: Callable[[ApiClient, Target], Awaitable[R]], *, error_code: int = 1) -> R:
    """Run an async command body with a client for the resolved target; errors become one line and exit with
    ``error_code`` (``diff`` keeps 1 for "different")."""
    try:
        target = options().target()
    except ConfigError as err:
        fail(str(err), error_code)

    async def main() -> R:
        # A few quick retries ride over an API server restart; a dead address fails within a second.
        client = ApiClient(client_config(target, timeout=options().request_timeout, max_attempts=5))
        try:
            return await body(client, target)
        finally:
            await client.close()

    try:
        return asyncio.run(main())
    except ConflictError as err:
        fail(
            f"{err.message}\n(someone else changed the object meanwhile: run the command again to apply your change "
            "on the latest version)",
            error_code,
        )
    except UnavailableError as err:
        fail(err.message, error_code)
    except ApiError as err:
        fail(err.message, error_code)
    except KeyboardInterrupt:
        sys.exit(130)


def echo_lines(lines: list[str]) -> None:
    """Print lines."""
    for line in lines:
        click.echo(line)


Json = dict[str, Any]
