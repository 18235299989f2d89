"""Field validation of manifests, with Kubernetes' ``fieldValidation`` semantics.

Real manifests carry fields Navarch does not model (``imagePullPolicy``, ``dnsPolicy``, ``resources.claims``,
``status: {}`` ...). Each field of a manifest is one of:

- **modelled**: a field of the protobuf schema; parsed as usual.
- **defined by Kubernetes, ignored by Navarch** (``KUBERNETES_FIELDS`` below, per schema type, so it applies
  wherever the type appears: a Pod's spec and every template's): dropped, with a warning naming its path,
  whatever the policy asks. ``IGNORED_MODELLED`` lists the few that the schema keeps (for round trips) but
  nothing acts on, such as ``image``; the API server warns about those (``ignored_field_warnings``).
- **unknown to Kubernetes** (a typo, or a field from somewhere else): ``Strict`` refuses the whole object,
  naming the field path; ``Warn`` drops it with a warning; ``Ignore`` drops it silently.

``null`` values are dropped (in Kubernetes null means "not set": ``creationTimestamp: null`` from
``kubectl create --dry-run -o yaml``). The walk is bounded by the document (no recursion beyond its depth, which
the YAML/JSON parser has already bounded) and allocates nothing but the cleaned copy.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

from controlplane.api.errors import InvalidError

STRICT, WARN, IGNORE = "Strict", "Warn", "Ignore"
POLICIES = (STRICT, WARN, IGNORE)

_NO_IMAGES = "no container runtime: a container is command + args on the host"
_NO_NETWORK = "processes share the node's network; there is no pod network or DNS"
_NO_IDENTITY = "no service accounts or kernel security profiles; see securityContext.runAsUser"
_NO_STORAGE = "no persistent volumes"
_NOT_YET = "not implemented by Navarch"

# Fields Kubernetes defines on these types (by schema message name) that Navarch does not model.
KUBERNETES_FIELDS: dict[str, dict[str, str]] = {
    "ObjectMeta": {
        "managedFields": "server-side apply bookkeeping is not kept",
        "selfLink": "deprecated in Kubernetes",
    },
    "Container": {
        "imagePullPolicy": _NO_IMAGES,
        "terminationMessagePolicy": _NOT_YET,
        "stdin": _NOT_YET,
        "stdinOnce": _NOT_YET,
        "tty": _NOT_YET,
        "volumeDevices": _NO_STORAGE,
        "resizePolicy": _NOT_YET,
    },
    "ResourceRequirements": {"claims": "no dynamic resource allocation"},
    "SecurityContext": {
        "capabilities": _NO_IDENTITY,
        "privileged": _NO_IDENTITY,
        "allowPrivilegeEscalation": _NO_IDENTITY,
        "readOnlyRootFilesystem": _NO_IDENTITY,
        "procMount": _NO_IDENTITY,
        "seLinuxOptions": _NO_IDENTITY,
        "seccompProfile": _NO_IDENTITY,
        "appArmorProfile": _NO_IDENTITY,
        "windowsOptions": _NO_IDENTITY,
    },
    "PodSecurityContext": {
        "fsGroup": _NO_IDENTITY,
        "fsGroupChangePolicy": _NO_IDENTITY,
        "sysctls": _NO_IDENTITY,
        "seLinuxOptions": _NO_IDENTITY,
        "seLinuxChangePolicy": _NO_IDENTITY,
        "seccompProfile": _NO_IDENTITY,
        "appArmorProfile": _NO_IDENTITY,
        "windowsOptions": _NO_IDENTITY,
        "supplementalGroupsPolicy": _NO_IDENTITY,
    },
    "Probe": {"grpc": _NOT_YET},
    "Lifecycle": {"stopSignal": _NOT_YET},
    "PodSpec": {
        "dnsPolicy": _NO_NETWORK,
        "dnsConfig": _NO_NETWORK,
        "hostNetwork": _NO_NETWORK,
        "hostPID": _NO_NETWORK,
        "hostIPC": _NO_NETWORK,
        "hostAliases": _NO_NETWORK,
        "setHostnameAsFQDN": _NO_NETWORK,
        "hostUsers": _NO_IDENTITY,
        "serviceAccount": _NO_IDENTITY,
        "automountServiceAccountToken": _NO_IDENTITY,
        "imagePullSecrets": _NO_IMAGES,
        "readinessGates": _NOT_YET,
        "runtimeClassName": _NO_IMAGES,
        "overhead": _NO_IMAGES,
        "ephemeralContainers": _NOT_YET,
        "os": "Navarch runs on Linux hosts",
        "schedulingGates": _NOT_YET,
        "resourceClaims": "no dynamic resource allocation",
        "resources": _NOT_YET,
    },
    "Volume": {
        "projected": _NOT_YET,
        "downwardAPI": _NOT_YET,
        "ephemeral": _NO_STORAGE,
        "csi": _NO_STORAGE,
        "nfs": _NO_STORAGE,
        "image": _NO_IMAGES,
    },
    "ServiceSpec": {
        "ipFamilies": _NO_NETWORK,
        "ipFamilyPolicy": _NO_NETWORK,
        "internalTrafficPolicy": _NOT_YET,
        "externalTrafficPolicy": _NOT_YET,
        "loadBalancerIP": "no load balancers",
        "loadBalancerSourceRanges": "no load balancers",
        "loadBalancerClass": "no load balancers",
        "allocateLoadBalancerNodePorts": "no load balancers",
        "healthCheckNodePort": "no load balancers",
        "trafficDistribution": _NOT_YET,
    },
    "ServiceStatus": {"loadBalancer": "no load balancers"},
    "JobSpec": {
        "podFailurePolicy": _NOT_YET,
        "podReplacementPolicy": _NOT_YET,
        "successPolicy": _NOT_YET,
        "managedBy": _NOT_YET,
    },
    "ReplicaSetStatus": {"terminatingReplicas": "set by the server"},
}

# Fields the schema has (so objects round-trip) that nothing acts on: the API server warns when they are set.
IGNORED_MODELLED: dict[str, dict[str, str]] = {
    "Container": {"image": _NO_IMAGES},
    "PodSpec": {"shareProcessNamespace": _NOT_YET},
}

_WELL_KNOWN = "google.protobuf."


def check_policy(policy: str, *, what: str = "fieldValidation") -> str:
    """``Strict``/``Warn``/``Ignore`` (any case; empty means ``default``); raises for anything else."""
    for known in POLICIES:
        if policy.lower() == known.lower():
            return known
    raise InvalidError(f"{what}: {policy!r} is not one of Strict, Warn, Ignore", field=what)


@dataclass
class Cleaned:
    """A manifest with the fields the schema does not model taken out."""

    doc: dict[str, Any]
    """What the schema parses (a new dict; the input is not changed)."""
    warnings: list[str] = field(default_factory=list)
    """One line per dropped field: ``spec.containers[0].imagePullPolicy: ignored (...)``."""


def clean(doc: dict[str, Any], message: type[Message], *, policy: str = STRICT) -> Cleaned:
    """Split a manifest into what ``message`` models and warnings about the rest; raises ``InvalidError`` naming
    every field unknown to Kubernetes when ``policy`` is Strict."""
    warnings: list[str] = []
    unknown: list[str] = []
    descriptor: Descriptor = message.DESCRIPTOR  # type: ignore[assignment]
    out = _clean_message(doc, descriptor, "", warnings, unknown, policy)
    if unknown and policy == STRICT:
        raise InvalidError("; ".join(f"{path}: unknown field" for path in unknown), field=unknown[0])
    if policy == WARN:
        warnings.extend(f'unknown field "{path}"' for path in unknown)
    return Cleaned(out, warnings)


def _clean_message(
    doc: dict[str, Any], desc: Descriptor, path: str, warnings: list[str], unknown: list[str], policy: str
) -> dict[str, Any]:
    fields = {f.json_name: f for f in desc.fields}
    fields.update({f.name: f for f in desc.fields})
    known = KUBERNETES_FIELDS.get(desc.name, {})
    out: dict[str, Any] = {}
    for key, value in doc.items():
        where = f"{path}.{key}" if path else str(key)
        if value is None:
            continue
        f = fields.get(key) if isinstance(key, str) else None
        if f is None:
            if key in known:
                if policy != IGNORE:
                    warnings.append(f"{where}: ignored ({known[key]})")
            elif path == "" and key in ("apiVersion", "kind"):
                out[key] = value
            else:
                unknown.append(where)
            continue
        out[key] = _clean_value(value, f, where, warnings, unknown, policy)
    return out


def _clean_value(
    value: Any, f: FieldDescriptor, where: str, warnings: list[str], unknown: list[str], policy: str
) -> Any:
    sub = f.message_type
    if sub is None or sub.full_name.startswith(_WELL_KNOWN):
        return value
    if sub.GetOptions().map_entry:
        inner = sub.fields_by_name["value"]
        if not isinstance(value, dict) or inner.message_type is None:
            return value
        return {k: _clean_value(v, inner, f"{where}[{k}]", warnings, unknown, policy) for k, v in value.items()}
    if f.is_repeated:
        if not isinstance(value, list):
            return value  # the parser names the type error
        return [
            _clean_message(v, sub, f"{where}[{i}]", warnings, unknown, policy) if isinstance(v, dict) else v
            for i, v in enumerate(value)
        ]
    if isinstance(value, dict):
        return _clean_message(value, sub, where, warnings, unknown, policy)
    return value


def ignored_field_warnings(obj: Message) -> list[str]:
    """Warnings about set fields that the schema keeps but nothing acts on (``IGNORED_MODELLED``), by path."""
    out: list[str] = []
    _walk_set_fields(obj, "", out)
    return out


def _reaches_ignored(desc: Descriptor, seen: frozenset[str] = frozenset()) -> bool:
    cached = _REACHES.get(desc.full_name)
    if cached is not None:
        return cached
    if desc.name in IGNORED_MODELLED:
        _REACHES[desc.full_name] = True
        return True
    found = any(
        f.message_type is not None
        and f.message_type.full_name not in seen
        and not f.message_type.full_name.startswith(_WELL_KNOWN)
        and _reaches_ignored(f.message_type, seen | {desc.full_name})
        for f in desc.fields
    )
    _REACHES[desc.full_name] = found
    return found


_REACHES: dict[str, bool] = {}


def _walk_set_fields(msg: Message, path: str, out: list[str]) -> None:
    desc = msg.DESCRIPTOR
    if not _reaches_ignored(desc):  # type: ignore[arg-type]
        return
    ignored = IGNORED_MODELLED.get(desc.name, {})
    for f, value in msg.ListFields():
        where = f"{path}.{f.json_name}" if path else f.json_name
        if f.json_name in ignored:
            out.append(f"{where}: ignored ({ignored[f.json_name]})")
            continue
        if f.message_type is None or f.message_type.GetOptions().map_entry:
            continue
        items: Iterable[Message] = value if f.is_repeated else [value]
        for i, item in enumerate(items):
            _walk_set_fields(item, f"{where}[{i}]" if f.is_repeated else where, out)
