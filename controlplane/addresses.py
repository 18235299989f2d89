"""Network addresses as operators write them on the command line, checked before anything uses them.

Every component takes ``host:port`` lists (``--server``, ``--etcd-servers``) and listen addresses
(``--listen``). A malformed value is refused here, with the flag and the value named, instead of surfacing
later as a gRPC "target uri is not valid" traceback. ``--etcd-servers`` also takes URLs as kube-apiserver and
etcdctl do (``http://10.0.0.2:2379``, ``https://...``), the scheme saying whether TLS is used.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import click

_LABEL = r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOSTNAME = re.compile(rf"^(?=.{{1,253}}$){_LABEL}(\.{_LABEL})*\.?$")
ETCD_DEFAULT_PORT = 2379


class AddressError(ValueError):
    """A value that is not a usable address; the message says why (the caller adds flag and value)."""


def _host(text: str, *, allow_empty: bool) -> str:
    if not text:
        if allow_empty:
            return ""
        raise AddressError("no host")
    if text.startswith("["):
        if not text.endswith("]"):
            raise AddressError(f"unbalanced brackets in {text!r}")
        try:
            ipaddress.IPv6Address(text[1:-1])
        except ValueError:
            raise AddressError(f"{text[1:-1]!r} is not an IPv6 address") from None
        return text
    try:
        ipaddress.IPv4Address(text)
        return text
    except ValueError:
        pass
    if text.replace(".", "").isdigit():
        raise AddressError(f"{text!r} is not an IPv4 address")
    if not _HOSTNAME.match(text):
        raise AddressError(f"{text!r} is not a host name or IP address")
    return text


def _port(text: str, *, allow_zero: bool) -> int:
    if not text.isdigit() or len(text) > 5:
        raise AddressError(f"port {text!r} is not a number")
    port = int(text)
    if port > 65535 or (port == 0 and not allow_zero):
        raise AddressError(f"port {port} is out of range (1-65535)")
    return port


def host_port(value: str, *, default_port: int | None = None, listen: bool = False) -> str:
    """``host:port`` (or ``[v6]:port``) checked and returned as written; ``listen`` also allows an empty host
    (every interface) and port 0 (any free port)."""
    text = value.strip()
    if not text or any(c.isspace() for c in text) or "/" in text:
        raise AddressError("expected host:port")
    if text.startswith("[") and "]" in text:
        host, _, rest = text[1:].partition("]")
        host = f"[{host}]"
        if rest and not rest.startswith(":"):
            raise AddressError("expected [address]:port")
        port_text = rest[1:]
    elif text.count(":") > 1:
        raise AddressError("an IPv6 address needs brackets: [address]:port")
    else:
        host, sep, port_text = text.partition(":")
        if not sep:
            port_text = ""
    if not port_text:
        if default_port is None:
            raise AddressError("no port (expected host:port)")
        port_text = str(default_port)
    checked = _host(host, allow_empty=listen)
    return f"{checked}:{_port(port_text, allow_zero=listen)}"


def server_list(value: str) -> list[str]:
    """A comma list of ``host:port`` (API servers); at least one."""
    items = [v.strip() for v in value.split(",") if v.strip()]
    if not items:
        raise AddressError("no address given")
    return [host_port(v) for v in items]


@dataclass(frozen=True)
class EtcdEndpoints:
    """``--etcd-servers`` parsed: the members' ``host:port`` and whether the URLs asked for TLS."""

    endpoints: list[str]
    tls: bool | None
    """True for ``https://``, False for ``http://``, None when only bare ``host:port`` were given."""


def etcd_servers(value: str) -> EtcdEndpoints:
    """A comma list of etcd members: ``http://h:p``, ``https://h:p`` or bare ``h:p`` (port 2379 by default);
    all URLs must agree on the scheme, since one client connects to all of them."""
    items = [v.strip() for v in value.split(",") if v.strip()]
    if not items:
        raise AddressError("no etcd member given")
    endpoints: list[str] = []
    schemes: set[str] = set()
    for item in items:
        scheme, sep, rest = item.partition("://")
        if not sep:
            rest, scheme = item, ""
        elif scheme.lower() not in ("http", "https"):
            raise AddressError(f"{item!r}: the scheme must be http or https")
        else:
            schemes.add(scheme.lower())
        rest = rest[:-1] if rest.endswith("/") else rest
        try:
            endpoint = host_port(rest, default_port=ETCD_DEFAULT_PORT)
        except AddressError as err:
            raise AddressError(f"{item!r}: {err}") from None
        if endpoint.startswith("["):
            raise AddressError(f"{item!r}: give etcd members by IPv4 address or host name (the client is IPv4 only)")
        endpoints.append(endpoint)
    if len(schemes) > 1:
        raise AddressError("mixes http:// and https:// members (one client connects to all of them)")
    return EtcdEndpoints(endpoints, None if not schemes else schemes == {"https"})


def _callback(parse: Callable[[str], Any]) -> Callable[[click.Context, click.Parameter, Any], Any]:
    def check(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
        if value is None:
            return None
        try:
            return parse(value)
        except AddressError as err:
            raise click.BadParameter(f"{value!r}: {err}") from None

    return check


address_option_callback = _callback(host_port)
"""A click callback: one ``host:port``, checked (returned as written)."""
servers_option_callback = _callback(server_list)
"""A click callback: the option's comma list of API servers, parsed (a list of ``host:port``)."""
listen_option_callback = _callback(lambda v: host_port(v, listen=True))
"""A click callback: a listen address, checked (returned as written)."""
etcd_servers_option_callback = _callback(etcd_servers)
"""A click callback: ``--etcd-servers`` parsed into ``EtcdEndpoints``."""


def metrics_listen_option_callback(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    """A click callback: a listen address, or "" (no endpoint)."""
    return listen_option_callback(ctx, param, value) if value else ""
