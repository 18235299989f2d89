"""How components and tools prove who they are to the API servers: the shared TLS flags.

``--certificate-authority`` (the cluster CA), ``--client-certificate``/``--client-key`` (mutual TLS) and
``--token-file`` (a bearer token, for the API server's token port). Without a CA the connection is plain text,
which only an ``--insecure`` API server on loopback accepts.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import click

from controlplane import transport
from controlplane.client.client import ClientConfig

F = TypeVar("F", bound=Callable[..., Any])


def channel_tls(
    certificate_authority: str | None,
    client_certificate: str | None,
    client_key: str | None,
    tls_server_name: str | None = None,
) -> transport.ChannelTLS | None:
    """The flags as ``ChannelTLS`` (None without a CA); ``click.UsageError`` for half a key pair."""
    if bool(client_certificate) != bool(client_key):
        raise click.UsageError("--client-certificate and --client-key go together")
    if client_certificate and not certificate_authority:
        raise click.UsageError("--client-certificate needs --certificate-authority")
    if not certificate_authority:
        return None
    return transport.ChannelTLS(certificate_authority, client_certificate, client_key, tls_server_name)


def read_token(token_file: str | None) -> str:
    """The bearer token in a file (stripped), or ""."""
    return Path(token_file).read_text().strip() if token_file else ""


@dataclass(frozen=True)
class ComponentCredentials:
    """A control-plane component's TLS: towards the API servers, and for its own status endpoint."""

    client_tls: transport.ChannelTLS | None = None
    token: str = ""
    server_tls: transport.ServerTLS | None = None
    """Its status endpoint serves mutual TLS with its own certificate (issued for client and server use)."""

    def client_config(self, endpoints: list[str], **kwargs: Any) -> ClientConfig:
        """A ClientConfig for the API servers with these credentials."""
        return ClientConfig(endpoints=endpoints, tls=self.client_tls, token=self.token, **kwargs)


def component_credentials(
    certificate_authority: str | None,
    client_certificate: str | None,
    client_key: str | None,
    tls_server_name: str | None,
    token_file: str | None,
) -> ComponentCredentials:
    """The TLS flags of a component as credentials."""
    tls = channel_tls(certificate_authority, client_certificate, client_key, tls_server_name)
    server = None
    if tls is not None and client_certificate and client_key:
        server = transport.ServerTLS(client_certificate, client_key, certificate_authority)
    return ComponentCredentials(tls, read_token(token_file), server)
