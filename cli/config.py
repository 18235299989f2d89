"""The CLI's config file: clusters, users, contexts and the current context, kubeconfig-style.

Location: ``$NAVARCH_CONFIG``, else ``~/.navarch/config``. YAML::

    current-context: local
    clusters: [{name: local, server: "127.0.0.1:6443,127.0.0.2:6443", certificate-authority: /path/ca.pem}]
    users: [{name: admin, token: ..., client-certificate: ..., client-key: ...}]
    contexts: [{name: local, cluster: local, user: admin, namespace: default}]
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from controlplane import addresses
from controlplane.transport import ChannelTLS

DEFAULT_SERVER = "127.0.0.1:6443"


class ConfigError(Exception):
    """The config file is unreadable or names something that does not exist."""


def config_path() -> Path:
    """Where the config file lives."""
    env = os.environ.get("NAVARCH_CONFIG")
    return Path(env) if env else Path.home() / ".navarch" / "config"


def load(path: Path | None = None) -> dict[str, Any]:
    """The config as a dict (empty structure if the file does not exist)."""
    path = path or config_path()
    if not path.exists():
        return {"current-context": "", "clusters": [], "users": [], "contexts": []}
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: must be a mapping")
    for section in ("clusters", "users", "contexts"):
        data.setdefault(section, [])
        if not isinstance(data[section], list):
            raise ConfigError(f"{path}: {section} must be a list")
    data.setdefault("current-context", "")
    return data


def save(data: dict[str, Any], path: Path | None = None) -> Path:
    """Write the config (mode 0600: it may hold tokens)."""
    path = path or config_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(yaml.safe_dump(data, sort_keys=False))
    tmp.chmod(0o600)
    tmp.replace(path)
    return path


def _named(data: dict[str, Any], section: str, name: str) -> dict[str, Any] | None:
    for entry in data.get(section, []):
        if isinstance(entry, dict) and entry.get("name") == name:
            return entry
    return None


def upsert(data: dict[str, Any], section: str, name: str, **fields: Any) -> dict[str, Any]:
    """Create or update a named entry; fields that are None are left as they are."""
    entry = _named(data, section, name)
    if entry is None:
        entry = {"name": name}
        data[section].append(entry)
    for key, value in fields.items():
        if value is not None:
            entry[key.replace("_", "-")] = value
    return entry


@dataclass(frozen=True)
class Target:
    """What one CLI invocation talks to."""

    servers: list[str]
    namespace: str
    context: str
    token: str = ""
    certificate_authority: str = ""
    """The cluster CA: TLS when set, plain text otherwise."""
    client_certificate: str = ""
    client_key: str = ""
    tls_server_name: str = ""
    metrics: dict[str, str] = field(default_factory=dict)
    """Each component's metrics URL (``navarch up`` records them in the cluster entry), by component."""

    def tls(self) -> ChannelTLS | None:
        """TLS settings for the client (None: plain text)."""
        if not self.certificate_authority:
            return None
        return ChannelTLS(
            self.certificate_authority,
            self.client_certificate or None,
            self.client_key or None,
            self.tls_server_name or None,
        )


def resolve(*, server: str | None, context: str | None, namespace: str | None) -> Target:
    """Combine flags with the config file: flags win, then the context, then defaults."""
    data = load()
    ctx_name = context or data.get("current-context") or ""
    ctx: dict[str, Any] = {}
    if ctx_name:
        found = _named(data, "contexts", ctx_name)
        if found is None:
            if context:
                raise ConfigError(f'context "{ctx_name}" does not exist in {config_path()}')
        else:
            ctx = found
    cluster = _named(data, "clusters", ctx.get("cluster", "")) or {}
    user = _named(data, "users", ctx.get("user", "")) or {}
    sources = [
        (server, "--server"),
        (os.environ.get("NAVARCH_SERVER"), "NAVARCH_SERVER"),
        (cluster.get("server"), f"cluster {ctx.get('cluster')!r} in {config_path()}"),
        (DEFAULT_SERVER, "the default"),
    ]
    servers_text, source = next((str(v), src) for v, src in sources if v)
    # kubectl users write https://host:port; the scheme is dropped (TLS comes from the context's CA).
    bare = ",".join(re.sub(r"^https?://", "", s.strip()).rstrip("/") for s in servers_text.split(","))
    try:
        servers = addresses.server_list(bare)
    except addresses.AddressError as err:
        raise ConfigError(f"the API server address {servers_text!r} (from {source}): {err}") from None
    return Target(
        servers=servers,
        namespace=namespace or ctx.get("namespace") or "default",
        context=ctx_name,
        token=str(user.get("token", "")),
        certificate_authority=str(cluster.get("certificate-authority", "")),
        client_certificate=str(user.get("client-certificate", "")),
        client_key=str(user.get("client-key", "")),
        tls_server_name=str(cluster.get("tls-server-name", "")),
        metrics={str(k): str(v) for k, v in (cluster.get("metrics") or {}).items()}
        if isinstance(cluster.get("metrics"), dict)
        else {},
    )
