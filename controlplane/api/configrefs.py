"""Which ConfigMaps and Secrets a container depends on, and a fingerprint of their versions.

Shared by the agent (``reloadPolicy`` Signal and Restart) and the controller manager (Rollout). A container
references an object through ``env[].valueFrom`` (configMapKeyRef, secretKeyRef), ``envFrom``, and the
configMap and secret volumes it mounts. The fingerprint covers each object's uid and resourceVersion (or its
absence), not its content: it changes with every write to a referenced object, and, written into a
Deployment's annotations, reveals nothing about a Secret's data.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from google.protobuf.message import Message

from controlplane.api.objects import meta
from controlplane.api.pb import core_pb2


@dataclass(frozen=True, order=True)
class ConfigRef:
    """One referenced object: ``ConfigMap`` or ``Secret``, by name (in the pod's namespace)."""

    kind: str
    name: str


def config_references(spec: core_pb2.PodSpec, container: core_pb2.Container) -> list[ConfigRef]:
    """The ConfigMaps and Secrets ``container`` of a pod with ``spec`` references, sorted, each once."""
    refs: set[ConfigRef] = set()
    for env in container.env:
        source = env.value_from
        if source.HasField("config_map_key_ref") and source.config_map_key_ref.name:
            refs.add(ConfigRef("ConfigMap", source.config_map_key_ref.name))
        if source.HasField("secret_key_ref") and source.secret_key_ref.name:
            refs.add(ConfigRef("Secret", source.secret_key_ref.name))
    for env_from in container.env_from:
        if env_from.HasField("config_map_ref") and env_from.config_map_ref.name:
            refs.add(ConfigRef("ConfigMap", env_from.config_map_ref.name))
        if env_from.HasField("secret_ref") and env_from.secret_ref.name:
            refs.add(ConfigRef("Secret", env_from.secret_ref.name))
    mounted = {m.name for m in container.volume_mounts}
    for vol in spec.volumes:
        if vol.name not in mounted:
            continue
        if vol.HasField("config_map") and vol.config_map.name:
            refs.add(ConfigRef("ConfigMap", vol.config_map.name))
        if vol.HasField("secret") and vol.secret.secret_name:
            refs.add(ConfigRef("Secret", vol.secret.secret_name))
    return sorted(refs)


def fingerprint(objects: Mapping[ConfigRef, Message | None] | Iterable[tuple[ConfigRef, Message | None]]) -> str:
    """A short hash of the referenced objects' versions (an absent object counts as absent)."""
    pairs = sorted(objects.items() if isinstance(objects, Mapping) else objects, key=lambda p: p[0])
    h = hashlib.sha256()
    for ref, obj in pairs:
        version = f"{meta(obj).uid}/{meta(obj).resource_version}" if obj is not None else "absent"
        h.update(f"{ref.kind}/{ref.name}={version}\n".encode())
    return h.hexdigest()[:16]
