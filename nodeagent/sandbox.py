"""A pod's sandbox on the host: directories, volumes, and each container's environment.

Layout under ``<data-dir>/pods/<uid>/``::

    pod.json                     the agent's record (state.py)
    work/                        default workingDir of every container
    volumes/<name>/              emptyDir volumes, and the files of configMap/secret volumes
    containers/<name>/           shim state (started.json, exit.json) and log files (0700)

Volume mounts. A process cannot get a private root here, so ``mountPath`` is honoured this way (the rule):
the volume's real directory is given to the process in ``NAVARCH_VOLUME_<NAME>`` (the volume's name upper-cased,
``-`` as ``_``), and, relative to the default working directory, ``work/<mountPath>`` is a symlink to it.
A process that runs in the default working directory can therefore use ``./<mountPath>``.
"""

from __future__ import annotations

import base64
import os
import re
import shutil
from pathlib import Path
from typing import Any, Protocol

from controlplane.api.errors import NotFoundError
from controlplane.api.pb import core_pb2
from controlplane.client.client import ApiClient
from nodeagent import safefs

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class ConfigError(Exception):
    """The pod refers to something that is missing or unusable; the message says what."""


def env_name(text: str) -> str:
    """An environment variable name from a volume or port name."""
    return re.sub(r"[^A-Za-z0-9_]", "_", text).upper()


def inside(rel: str) -> bool:
    """Whether a relative path stays inside the directory it is joined to (no absolute path, no '..')."""
    return bool(rel) and not rel.startswith("/") and ".." not in rel.split("/") and "\0" not in rel


class ClaimVolumes(Protocol):
    """Resolves a pod's persistentVolumeClaim volume to a directory on this node (nodeagent/localvolumes.py)."""

    async def claim_dir(self, client: ApiClient, namespace: str, claim: str, volume: str) -> Path: ...


class Sandbox:
    """One pod's directories and volumes."""

    def __init__(self, root: Path, claims: ClaimVolumes | None = None) -> None:
        self.root = root
        self.claims = claims
        self.work = root / "work"
        self.volumes = root / "volumes"
        self.containers = root / "containers"

    def container_dir(self, name: str) -> Path:
        """The shim state and logs of a container."""
        return self.containers / name

    def create(self) -> None:
        """Make the directories (idempotent)."""
        for d in (self.work, self.volumes, self.containers):
            d.mkdir(parents=True, exist_ok=True)
        # Shim state and logs hold the resolved environment (Secrets included) and the output: the agent's
        # alone (logs reach users through the API, with its authorization).
        self.containers.chmod(0o700)

    def remove(self) -> None:
        """Delete everything, emptyDirs included (the pod is gone)."""
        shutil.rmtree(self.root, ignore_errors=True)

    async def prepare_volumes(self, client: ApiClient, pod: core_pb2.Pod) -> dict[str, Path]:
        """Make every volume available (again: configMap and secret contents are refreshed, atomically per
        file); returns volume name -> real directory."""
        out: dict[str, Path] = {}
        for vol in pod.spec.volumes:
            if vol.HasField("persistent_volume_claim"):
                if self.claims is None:
                    raise ConfigError(f'volume "{vol.name}": this agent has no local persistent volumes')
                claim = vol.persistent_volume_claim.claim_name
                out[vol.name] = await self.claims.claim_dir(client, pod.metadata.namespace, claim, vol.name)
                continue
            if vol.HasField("host_path"):
                path = Path(vol.host_path.path)
                if vol.host_path.type in ("DirectoryOrCreate", ""):
                    try:
                        path.mkdir(parents=True, exist_ok=True)
                    except OSError as err:
                        raise ConfigError(f'volume "{vol.name}": hostPath {path}: {err.strerror}') from None
                elif not path.exists():
                    raise ConfigError(f'volume "{vol.name}": hostPath {path} does not exist')
                out[vol.name] = path
                continue
            target = self.volumes / vol.name
            self.volumes.mkdir(parents=True, exist_ok=True)
            # The volumes directory may belong to the workload: never follow a link it put in its place.
            with safefs.opened_dir(str(self.volumes)) as volumes_fd:
                os.close(safefs.ensure_dir(volumes_fd, vol.name))
            if vol.HasField("config_map"):
                await self._project(
                    client,
                    pod.metadata.namespace,
                    vol.name,
                    "ConfigMap",
                    vol.config_map.name,
                    vol.config_map.items,
                    vol.config_map.optional,
                    target,
                    vol.config_map.default_mode if vol.config_map.HasField("default_mode") else 0o644,
                )
            elif vol.HasField("secret"):
                await self._project(
                    client,
                    pod.metadata.namespace,
                    vol.name,
                    "Secret",
                    vol.secret.secret_name,
                    vol.secret.items,
                    vol.secret.optional,
                    target,
                    vol.secret.default_mode if vol.secret.HasField("default_mode") else 0o600,
                )
            out[vol.name] = target
        return out

    async def _project(
        self,
        client: ApiClient,
        namespace: str,
        volume: str,
        kind: str,
        name: str,
        items: Any,
        optional: bool,
        target: Path,
        mode: int,
    ) -> None:
        try:
            obj = await client.get_by_name(kind, name, namespace)
        except NotFoundError:
            if optional:
                return
            raise ConfigError(f'volume "{volume}": {kind.lower()} "{name}" not found') from None
        data: dict[str, bytes] = {}
        if isinstance(obj, core_pb2.ConfigMap):
            data = {k: v.encode() for k, v in obj.data.items()} | dict(obj.binary_data)
        elif isinstance(obj, core_pb2.Secret):
            data = dict(obj.data)
        wanted = {i.key: (i.path, i.mode if i.HasField("mode") else mode) for i in items} or {
            k: (k, mode) for k in data
        }
        for key, (rel, _) in wanted.items():
            if key not in data:
                raise ConfigError(f'volume "{volume}": key "{key}" not found in {kind.lower()} "{name}"')
            if not inside(rel):
                # Refused by validation; a pod stored before that rule still must not write off the sandbox.
                raise ConfigError(f'volume "{volume}": item path {rel!r} leaves the volume')
            if not [p for p in rel.split("/") if p not in ("", ".")]:
                raise ConfigError(f'volume "{volume}": item path {rel!r} names no file')
        try:
            with safefs.opened_dir(str(target.parent)) as volumes_fd, safefs.opened_dir(target.name, volumes_fd) as top:
                # New files belong to whoever owns the volume (the pod's user once it has started).
                st = os.fstat(top)
                owner = (st.st_uid, st.st_gid)
                for key, (rel, file_mode) in wanted.items():
                    *dirs, leaf = [p for p in rel.split("/") if p and p != "."]
                    fd = safefs.walk_to(top, dirs)
                    try:
                        mode = file_mode & 0o777
                        if not safefs.same_content(fd, leaf, data[key], mode, owner):
                            safefs.replace_file(fd, leaf, data[key], mode, owner)
                    finally:
                        os.close(fd)
                # Keys removed from the object disappear from the volume too.
                safefs.remove_files_except(top, {Path(rel).parts[0] for rel, _ in wanted.values()})
        except OSError as err:
            raise ConfigError(f'volume "{volume}": {err.strerror or err}') from None

    def link_mounts(self, container: core_pb2.Container, volumes: dict[str, Path]) -> dict[str, str]:
        """Symlink each mountPath under work/ and return the NAVARCH_VOLUME_* variables."""
        env: dict[str, str] = {}
        for mount in container.volume_mounts:
            real = volumes.get(mount.name)
            if real is None:
                continue
            if not inside(mount.sub_path or ".") or not inside(mount.mount_path.lstrip("/") or "."):
                raise ConfigError(f'volumeMount "{mount.name}": subPath or mountPath leaves the sandbox')
            source = real / mount.sub_path if mount.sub_path else real
            env[f"NAVARCH_VOLUME_{env_name(mount.name)}"] = str(source)
            link = self.work / mount.mount_path.lstrip("/")
            link.parent.mkdir(parents=True, exist_ok=True)
            # Relative inside the sandbox: an unprivileged workload may not be able to walk the data dir's
            # parents, but it can always follow ../volumes from its working directory.
            target = os.path.relpath(source, link.parent) if source.is_relative_to(self.root) else str(source)
            if link.is_symlink() or link.exists():
                if link.is_symlink() and os.readlink(link) == target:
                    continue
                if link.is_symlink():
                    link.unlink()
                else:
                    continue  # a real file or directory is in the way: leave it, the variable still works
            link.symlink_to(target)
        return env


def _field_value(pod: core_pb2.Pod, path: str, node_name: str, node_ip: str) -> str:
    simple = {
        "metadata.name": pod.metadata.name,
        "metadata.namespace": pod.metadata.namespace,
        "metadata.uid": pod.metadata.uid,
        "spec.nodeName": node_name,
        "spec.serviceAccountName": pod.spec.service_account_name,
        "status.podIP": node_ip,
        "status.hostIP": node_ip,
        "status.podIPs": node_ip,
    }
    if path in simple:
        return simple[path]
    m = re.fullmatch(r"metadata\.(labels|annotations)\['([^']+)'\]", path)
    if m:
        values: dict[str, str] = dict(getattr(pod.metadata, m.group(1)))
        return values.get(m.group(2), "")
    raise ConfigError(f"fieldRef {path!r} is not supported")


async def _lookup(
    client: ApiClient, kind: str, namespace: str, name: str, key: str | None, optional: bool
) -> dict[str, str] | None:
    try:
        obj = await client.get_by_name(kind, name, namespace)
    except NotFoundError:
        if optional:
            return None
        raise ConfigError(f'{kind.lower()} "{name}" not found') from None
    if isinstance(obj, core_pb2.Secret):
        values = {k: v.decode(errors="replace") for k, v in obj.data.items()}
    else:
        assert isinstance(obj, core_pb2.ConfigMap)
        values = dict(obj.data) | {k: base64.b64encode(v).decode() for k, v in obj.binary_data.items()}
    if key is not None and key not in values:
        if optional:
            return None
        raise ConfigError(f"couldn't find key {key} in {kind} {namespace}/{name}")
    return values


_VAR_REF = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)|\$\$")


def expand(text: str, env: dict[str, str]) -> str:
    """Kubernetes' ``$(VAR)`` expansion (``$$`` escapes; unknown references stay as written)."""

    def sub(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        return env.get(m.group(1), m.group(0))

    return _VAR_REF.sub(sub, text)


def service_env(services: list[core_pb2.Service]) -> dict[str, str]:
    """Kubernetes' service environment variables: ``WEB_SERVICE_HOST``, ``WEB_SERVICE_PORT`` (the first
    port) and ``WEB_SERVICE_PORT_<NAME>`` per named port, for Services with a cluster IP."""
    env: dict[str, str] = {}
    for svc in services:
        ip = svc.spec.cluster_ip
        if not ip or ip == "None" or not svc.spec.ports:
            continue
        prefix = env_name(svc.metadata.name)
        env[f"{prefix}_SERVICE_HOST"] = ip
        env[f"{prefix}_SERVICE_PORT"] = str(svc.spec.ports[0].port)
        for port in svc.spec.ports:
            if port.name:
                env[f"{prefix}_SERVICE_PORT_{env_name(port.name)}"] = str(port.port)
    return env


async def container_env(
    client: ApiClient,
    pod: core_pb2.Pod,
    container: core_pb2.Container,
    *,
    node_name: str,
    node_ip: str,
    extra: dict[str, str],
) -> dict[str, str]:
    """The process environment: a default PATH, envFrom, env (with valueFrom and $(VAR)), then ``extra``."""
    ns = pod.metadata.namespace
    env: dict[str, str] = {"PATH": DEFAULT_PATH, "HOSTNAME": pod.spec.hostname or pod.metadata.name}
    for source in container.env_from:
        if source.HasField("config_map_ref"):
            values = await _lookup(
                client, "ConfigMap", ns, source.config_map_ref.name, None, source.config_map_ref.optional
            )
        else:
            values = await _lookup(client, "Secret", ns, source.secret_ref.name, None, source.secret_ref.optional)
        for k, v in (values or {}).items():
            env[source.prefix + k] = v
    env.update(extra)
    for var in container.env:
        if var.HasField("value_from"):
            vf = var.value_from
            if vf.HasField("field_ref"):
                env[var.name] = _field_value(pod, vf.field_ref.field_path, node_name, node_ip)
            elif vf.HasField("config_map_key_ref"):
                ref = vf.config_map_key_ref
                values = await _lookup(client, "ConfigMap", ns, ref.name, ref.key, ref.optional)
                if values is not None:
                    env[var.name] = values[ref.key]
            elif vf.HasField("secret_key_ref"):
                sref = vf.secret_key_ref
                values = await _lookup(client, "Secret", ns, sref.name, sref.key, sref.optional)
                if values is not None:
                    env[var.name] = values[sref.key]
            elif vf.HasField("resource_field_ref"):
                limits = dict(container.resources.limits)
                env[var.name] = limits.get(vf.resource_field_ref.resource, "")
        else:
            env[var.name] = expand(var.value, env)
    return env
