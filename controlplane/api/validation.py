"""Validation of API objects, with Kubernetes' rules and field paths a user can act on.

``validate(obj)`` checks one object on its own (syntax, required fields,
ranges, references inside the object). Rules that need the stored object
(immutable fields) or other objects (the namespace exists) live in the API
server's strategies. Every problem is reported at once, each as
``path: reason``, e.g. ``spec.containers[0].command: required``.
"""

from __future__ import annotations

import contextlib
import ipaddress
import re
from collections.abc import Callable, Iterable, Mapping, Sequence

from google.protobuf import struct_pb2
from google.protobuf.message import Message

from controlplane.api import cronschedule, kinds
from controlplane.api.artifactnames import artifact_file_name, artifact_is_archive
from controlplane.api.errors import InvalidError
from controlplane.api.objects import describe, meta
from controlplane.api.pb import (
    apps_pb2,
    autoscaling_pb2,
    batch_pb2,
    coordination_pb2,
    core_pb2,
    meta_pb2,
    policy_pb2,
    rbac_pb2,
    scheduling_pb2,
)
from controlplane.api.quantity import parse_quantity
from controlplane.api.selectors import from_label_selector_message

MAX_OBJECT_BYTES = 1024 * 1024
"""Largest serialized object accepted (etcd's default request limit is 1.5 MiB)."""

_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_DNS1035_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_QUALIFIED_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_ENV_NAME = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")
_CONFIG_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")
_PORT_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")

RESTART_POLICIES = ("Always", "OnFailure", "Never")
TAINT_EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")
PROTOCOLS = ("TCP", "UDP")
SERVICE_TYPES = ("ClusterIP", "NodePort", "ExternalName")


class Errors:
    """Collects ``path: reason`` problems for one object."""

    def __init__(self) -> None:
        self.items: list[str] = []

    def add(self, path: str, reason: str) -> None:
        """Record one problem at a field path."""
        self.items.append(f"{path}: {reason}")

    def raise_for(self, obj: Message) -> None:
        """Raise one ``InvalidError`` naming the object and every problem, if there are any."""
        if self.items:
            raise InvalidError(f"{describe(obj)} is invalid: " + "; ".join(self.items), field=self.items[0])


# ------------------------------------------------------------------ primitives


def check_dns1123_label(errs: Errors, path: str, value: str) -> None:
    """A DNS-1123 label: lower-case alphanumerics and '-', at most 63 characters."""
    if not value:
        errs.add(path, "required")
    elif len(value) > 63 or not _DNS1123_LABEL.match(value):
        errs.add(
            path,
            f"{value!r} must be a DNS-1123 label: at most 63 lower-case letters, digits or '-', starting and "
            "ending with a letter or digit",
        )


def check_dns1123_subdomain(errs: Errors, path: str, value: str) -> None:
    """A DNS-1123 subdomain: dot-separated labels, at most 253 characters."""
    if not value:
        errs.add(path, "required")
    elif len(value) > 253 or not _DNS1123_SUBDOMAIN.match(value):
        errs.add(
            path,
            f"{value!r} must be a DNS-1123 subdomain: lower-case letters, digits, '-' and '.', starting and "
            "ending with a letter or digit, at most 253 characters",
        )


def check_qualified_key(errs: Errors, path: str, key: str) -> None:
    """A label or annotation key: ``[prefix/]name``."""
    prefix, _, name = key.rpartition("/")
    if "/" in key and not prefix:
        errs.add(path, f"key {key!r}: the prefix before '/' must not be empty")
        return
    if prefix and (len(prefix) > 253 or not _DNS1123_SUBDOMAIN.match(prefix)):
        errs.add(path, f"key {key!r}: prefix {prefix!r} must be a DNS-1123 subdomain")
    if not name or len(name) > 63 or not _QUALIFIED_NAME.match(name):
        errs.add(
            path,
            f"key {key!r}: name part must be at most 63 characters of letters, digits, '-', '_' or '.', starting "
            "and ending with a letter or digit",
        )


def check_labels(errs: Errors, path: str, labels: Mapping[str, str]) -> None:
    """Label keys and values with Kubernetes' syntax."""
    for key in sorted(labels):
        check_qualified_key(errs, path, key)
        value = labels[key]
        if len(value) > 63 or not _LABEL_VALUE.match(value):
            errs.add(
                f"{path}[{key}]",
                f"value {value!r} must be at most 63 characters of letters, digits, '-', '_' or '.', starting and "
                "ending with a letter or digit",
            )


def check_quantities(errs: Errors, path: str, quantities: Mapping[str, str]) -> None:
    """Every value is a quantity and not negative."""
    for name in sorted(quantities):
        try:
            if parse_quantity(quantities[name]) < 0:
                errs.add(f"{path}.{name}", f"{quantities[name]!r} must not be negative")
        except ValueError as err:
            errs.add(f"{path}.{name}", str(err))


def check_port(errs: Errors, path: str, port: int, *, required: bool = True) -> None:
    """A TCP/UDP port number."""
    if port == 0 and not required:
        return
    if not 1 <= port <= 65535:
        errs.add(path, f"{port} must be a port number between 1 and 65535")


def check_int_or_string_port(errs: Errors, path: str, value: struct_pb2.Value, *, required: bool = True) -> None:
    """An IntOrString port: a number 1..65535 or a port name."""
    kind = value.WhichOneof("kind")
    if kind is None:
        if required:
            errs.add(path, "required")
    elif kind == "number_value":
        n = value.number_value
        if n != int(n):
            errs.add(path, f"{n} must be a whole port number")
        else:
            check_port(errs, path, int(n))
    elif kind == "string_value":
        s = value.string_value
        if s.isdigit():
            check_port(errs, path, int(s))
        elif len(s) > 15 or not _PORT_NAME.match(s):
            errs.add(path, f"{s!r} must be a port number or a port name (at most 15 lower-case letters, digits, '-')")
    else:
        errs.add(path, "must be a port number or a port name")


def check_int_or_percent(errs: Errors, path: str, value: struct_pb2.Value) -> None:
    """An IntOrString count: a non-negative integer or a percentage such as ``25%``."""
    kind = value.WhichOneof("kind")
    if kind is None:
        return
    if kind == "number_value":
        if value.number_value < 0 or value.number_value != int(value.number_value):
            errs.add(path, f"{value.number_value} must be a non-negative whole number")
    elif kind == "string_value":
        s = value.string_value
        if not re.match(r"^[0-9]+%$", s) and not s.isdigit():
            errs.add(path, f"{s!r} must be a whole number or a percentage such as '25%'")
    else:
        errs.add(path, "must be a whole number or a percentage")


def check_one_of(errs: Errors, path: str, value: str, allowed: Iterable[str], *, required: bool = False) -> None:
    """The value is one of an enumeration (empty allowed unless required)."""
    allowed = tuple(allowed)
    if not value:
        if required:
            errs.add(path, f"required; one of {', '.join(allowed)}")
        return
    if value not in allowed:
        errs.add(path, f"{value!r} is not one of {', '.join(allowed)}")


def check_label_selector(errs: Errors, path: str, sel: meta_pb2.LabelSelector) -> None:
    """A LabelSelector message: valid labels and operators."""
    check_labels(errs, f"{path}.matchLabels", sel.match_labels)
    for i, expr in enumerate(sel.match_expressions):
        p = f"{path}.matchExpressions[{i}]"
        check_qualified_key(errs, f"{p}.key", expr.key)
        check_one_of(errs, f"{p}.operator", expr.operator, ("In", "NotIn", "Exists", "DoesNotExist"), required=True)
        if expr.operator in ("In", "NotIn") and not expr.values:
            errs.add(f"{p}.values", f"required for operator {expr.operator}")
        if expr.operator in ("Exists", "DoesNotExist") and expr.values:
            errs.add(f"{p}.values", f"must be empty for operator {expr.operator}")


# -------------------------------------------------------------------- metadata


def validate_metadata(errs: Errors, info: kinds.KindInfo, md: meta_pb2.ObjectMeta) -> None:
    """Name, namespace, labels, annotations and references of any object."""
    if not md.name and not md.generate_name:
        errs.add("metadata.name", "required")
    elif md.name:
        if info.kind == "Service":
            # Services become DNS names and environment variables: a DNS-1035 label.
            if len(md.name) > 63 or not _DNS1035_LABEL.match(md.name):
                errs.add(
                    "metadata.name",
                    f"{md.name!r} must be a DNS-1035 label: at most 63 lower-case letters, digits or '-', starting "
                    "with a letter and ending with a letter or digit",
                )
        elif info.kind == "Namespace":
            check_dns1123_label(errs, "metadata.name", md.name)
        elif info.group == "rbac.authorization.k8s.io":
            # RBAC names are path segments (Kubernetes' rule), so "system:node-bootstrapper" is valid.
            if md.name in (".", "..") or any(c in md.name for c in "/%") or len(md.name) > 253:
                errs.add("metadata.name", f"{md.name!r} may not be '.' or '..' or contain '/' or '%'")
        else:
            check_dns1123_subdomain(errs, "metadata.name", md.name)
    if info.namespaced:
        if md.namespace:
            check_dns1123_label(errs, "metadata.namespace", md.namespace)
    elif md.namespace:
        errs.add("metadata.namespace", f"must be empty: {info.plural} are not namespaced")
    check_labels(errs, "metadata.labels", md.labels)
    for key in sorted(md.annotations):
        check_qualified_key(errs, "metadata.annotations", key)
    if sum(len(k) + len(v) for k, v in md.annotations.items()) > 256 * 1024:
        errs.add("metadata.annotations", "must have at most 262144 bytes in all")
    for i, ref in enumerate(md.owner_references):
        p = f"metadata.ownerReferences[{i}]"
        for field, value in (("apiVersion", ref.api_version), ("kind", ref.kind), ("name", ref.name), ("uid", ref.uid)):
            if not value:
                errs.add(f"{p}.{field}", "required")
    if sum(1 for r in md.owner_references if r.controller) > 1:
        errs.add("metadata.ownerReferences", "only one reference can have controller set to true")
    for i, fin in enumerate(md.finalizers):
        check_qualified_key(errs, f"metadata.finalizers[{i}]", fin)


# ------------------------------------------------------------------------- pod


def _validate_handler(errs: Errors, path: str, handler: Message, ports: set[str]) -> None:
    set_fields = [f.name for f, _ in handler.ListFields() if f.name in ("exec", "http_get", "tcp_socket")]
    if len(set_fields) != 1:
        errs.add(path, "exactly one of exec, httpGet or tcpSocket must be set")
        return
    if set_fields[0] == "exec" and not handler.exec.command:  # type: ignore[attr-defined]
        errs.add(f"{path}.exec.command", "required")
    elif set_fields[0] == "http_get":
        hg = handler.http_get  # type: ignore[attr-defined]
        _check_named_port(errs, f"{path}.httpGet.port", hg.port, ports)
        check_one_of(errs, f"{path}.httpGet.scheme", hg.scheme, ("HTTP", "HTTPS"))
        if hg.path and not hg.path.startswith("/"):
            errs.add(f"{path}.httpGet.path", f"{hg.path!r} must start with '/'")
    elif set_fields[0] == "tcp_socket":
        _check_named_port(errs, f"{path}.tcpSocket.port", handler.tcp_socket.port, ports)  # type: ignore[attr-defined]


def _check_named_port(errs: Errors, path: str, value: struct_pb2.Value, ports: set[str]) -> None:
    check_int_or_string_port(errs, path, value)
    named = value.WhichOneof("kind") == "string_value" and not value.string_value.isdigit()
    if named and value.string_value not in ports:
        errs.add(path, f"port name {value.string_value!r} is not a port of this container")


def _validate_probe(errs: Errors, path: str, probe: core_pb2.Probe, ports: set[str], *, liveness: bool) -> None:
    _validate_handler(errs, path, probe, ports)
    for field, value in (
        ("initialDelaySeconds", probe.initial_delay_seconds),
        ("timeoutSeconds", probe.timeout_seconds),
        ("periodSeconds", probe.period_seconds),
        ("successThreshold", probe.success_threshold),
        ("failureThreshold", probe.failure_threshold),
    ):
        if value < 0:
            errs.add(f"{path}.{field}", f"{value} must be greater than or equal to 0")
    if liveness and probe.success_threshold > 1:
        errs.add(f"{path}.successThreshold", "must be 1 for liveness and startup probes")


MAX_ARTIFACTS = 16
MAX_URL = 2048
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


def _validate_artifacts(errs: Errors, path: str, artifacts: Sequence[core_pb2.Artifact]) -> None:
    if len(artifacts) > MAX_ARTIFACTS:
        errs.add(f"{path}.artifacts", f"at most {MAX_ARTIFACTS}, not {len(artifacts)}")
        return
    targets: set[str] = set()
    for i, a in enumerate(artifacts):
        ap = f"{path}.artifacts[{i}]"
        scheme = a.url.split("://", 1)[0].lower() if "://" in a.url else ""
        if not a.url:
            errs.add(f"{ap}.url", "required")
        elif len(a.url) > MAX_URL:
            errs.add(f"{ap}.url", f"longer than {MAX_URL} characters")
        elif scheme not in ("http", "https", "file") or any(ch.isspace() or ord(ch) < 32 for ch in a.url):
            errs.add(f"{ap}.url", f"{a.url[:80]!r} must be an http, https or file URL without spaces")
        if not _SHA256.match(a.sha256):
            errs.add(f"{ap}.sha256", "must be 64 lower-case hexadecimal digits (the content's SHA-256)")
        name = a.path or artifact_file_name(a.url)
        extract = artifact_is_archive(a)
        if a.path or not extract:
            check_relative_path(errs, f"{ap}.path", name)
            if name in (".", "") and not extract:
                errs.add(f"{ap}.path", "must name a file (the URL has no file name)")
        if a.HasField("mode"):
            check_file_mode(errs, f"{ap}.mode", a.mode)
        if not extract:
            if name in targets:
                errs.add(f"{ap}.path", f"{name!r} is the file of another artifact")
            targets.add(name)


RELOAD_MODES = ("Signal", "Restart", "Rollout")
RELOAD_SIGNALS = ("SIGHUP", "SIGUSR1", "SIGUSR2", "SIGINT", "SIGQUIT", "SIGTERM", "SIGWINCH")


def _validate_reload_policy(errs: Errors, path: str, c: core_pb2.Container) -> None:
    if not c.HasField("reload_policy"):
        return
    rp = c.reload_policy
    check_one_of(errs, f"{path}.reloadPolicy.mode", rp.mode, RELOAD_MODES, required=True)
    if rp.signal and rp.mode != "Signal":
        errs.add(f"{path}.reloadPolicy.signal", "only for mode Signal")
    elif rp.signal:
        check_one_of(errs, f"{path}.reloadPolicy.signal", rp.signal, RELOAD_SIGNALS)


def _validate_container(errs: Errors, path: str, c: core_pb2.Container, volumes: set[str], *, init: bool) -> None:
    check_dns1123_label(errs, f"{path}.name", c.name)
    _validate_artifacts(errs, path, c.artifacts)
    _validate_reload_policy(errs, path, c)
    if not c.command:
        errs.add(f"{path}.command", "required (a container is a process: command + args)")
    elif not c.command[0]:
        errs.add(f"{path}.command[0]", "must not be empty")
    port_names: set[str] = set()
    for i, port in enumerate(c.ports):
        pp = f"{path}.ports[{i}]"
        if port.container_port == 0:
            # Navarch: a port the node chooses (PORT_<NAME> tells the process); a name makes it referable.
            if not port.name:
                errs.add(f"{pp}.containerPort", "0 (a port the node allocates) needs a name (ports[].name)")
            if port.host_port:
                errs.add(f"{pp}.hostPort", "must be unset when containerPort is 0 (the node allocates it)")
        else:
            check_port(errs, f"{pp}.containerPort", port.container_port)
        check_port(errs, f"{pp}.hostPort", port.host_port, required=False)
        check_one_of(errs, f"{pp}.protocol", port.protocol, PROTOCOLS)
        if port.name:
            if len(port.name) > 15 or not _PORT_NAME.match(port.name):
                errs.add(f"{pp}.name", f"{port.name!r} must be at most 15 lower-case letters, digits or '-'")
            elif port.name in port_names:
                errs.add(f"{pp}.name", f"duplicate port name {port.name!r}")
            port_names.add(port.name)
    for i, env in enumerate(c.env):
        ep = f"{path}.env[{i}]"
        if not env.name:
            errs.add(f"{ep}.name", "required")
        elif not _ENV_NAME.match(env.name):
            errs.add(
                f"{ep}.name", f"{env.name!r} must consist of letters, digits, '_', '-' or '.', not start with a digit"
            )
        if env.HasField("value_from"):
            vf = env.value_from
            sources = [f.name for f, _ in vf.ListFields()]
            if env.value:
                errs.add(f"{ep}.valueFrom", "may not be set when value is not empty")
            if len(sources) != 1:
                errs.add(f"{ep}.valueFrom", "exactly one of configMapKeyRef, secretKeyRef, fieldRef must be set")
            if vf.HasField("config_map_key_ref") and not (vf.config_map_key_ref.name and vf.config_map_key_ref.key):
                errs.add(f"{ep}.valueFrom.configMapKeyRef", "name and key are required")
            if vf.HasField("secret_key_ref") and not (vf.secret_key_ref.name and vf.secret_key_ref.key):
                errs.add(f"{ep}.valueFrom.secretKeyRef", "name and key are required")
            if vf.HasField("field_ref") and not vf.field_ref.field_path:
                errs.add(f"{ep}.valueFrom.fieldRef.fieldPath", "required")
    for i, ef in enumerate(c.env_from):
        if ef.HasField("config_map_ref") == ef.HasField("secret_ref"):
            errs.add(f"{path}.envFrom[{i}]", "exactly one of configMapRef or secretRef must be set")
    check_quantities(errs, f"{path}.resources.limits", c.resources.limits)
    check_quantities(errs, f"{path}.resources.requests", c.resources.requests)
    for name in sorted(set(c.resources.limits) & set(c.resources.requests)):
        try:
            if parse_quantity(c.resources.requests[name]) > parse_quantity(c.resources.limits[name]):
                errs.add(f"{path}.resources.requests.{name}", "must be less than or equal to the limit")
        except ValueError:
            pass  # already reported
    for i, vm in enumerate(c.volume_mounts):
        vp = f"{path}.volumeMounts[{i}]"
        if vm.name not in volumes:
            errs.add(f"{vp}.name", f"{vm.name!r} is not a volume of this pod" if vm.name else "required")
        if not vm.mount_path:
            errs.add(f"{vp}.mountPath", "required")
        elif ".." in vm.mount_path.split("/"):
            # The mountPath is linked under the sandbox's work/ directory: '..' would leave it.
            errs.add(f"{vp}.mountPath", f"{vm.mount_path!r} must not contain '..'")
        check_relative_path(errs, f"{vp}.subPath", vm.sub_path, required=False)
    all_ports = port_names | {str(p.container_port) for p in c.ports}
    if c.HasField("liveness_probe"):
        if init:
            errs.add(f"{path}.livenessProbe", "may not be set for init containers")
        _validate_probe(errs, f"{path}.livenessProbe", c.liveness_probe, all_ports, liveness=True)
    if c.HasField("readiness_probe"):
        if init:
            errs.add(f"{path}.readinessProbe", "may not be set for init containers")
        _validate_probe(errs, f"{path}.readinessProbe", c.readiness_probe, all_ports, liveness=False)
    if c.HasField("startup_probe"):
        if init:
            errs.add(f"{path}.startupProbe", "may not be set for init containers")
        _validate_probe(errs, f"{path}.startupProbe", c.startup_probe, all_ports, liveness=True)
    for hook in ("post_start", "pre_stop"):
        if c.lifecycle.HasField(hook):
            camel = "postStart" if hook == "post_start" else "preStop"
            _validate_handler(errs, f"{path}.lifecycle.{camel}", getattr(c.lifecycle, hook), all_ports)
    if init:
        check_one_of(errs, f"{path}.restartPolicy", c.restart_policy, ("Always",))
    elif c.restart_policy:
        errs.add(f"{path}.restartPolicy", "may only be set for init containers")


def _validate_node_selector_term(errs: Errors, path: str, term: core_pb2.NodeSelectorTerm) -> None:
    for i, req in enumerate(term.match_expressions):
        p = f"{path}.matchExpressions[{i}]"
        check_qualified_key(errs, f"{p}.key", req.key)
        ops = ("In", "NotIn", "Exists", "DoesNotExist", "Gt", "Lt")
        check_one_of(errs, f"{p}.operator", req.operator, ops, required=True)
        if req.operator in ("In", "NotIn") and not req.values:
            errs.add(f"{p}.values", f"required for operator {req.operator}")
        if req.operator in ("Exists", "DoesNotExist") and req.values:
            errs.add(f"{p}.values", f"must be empty for operator {req.operator}")
        if req.operator in ("Gt", "Lt") and (len(req.values) != 1 or not req.values[0].lstrip("-").isdigit()):
            errs.add(f"{p}.values", f"operator {req.operator} needs exactly one integer value")
    for i, req in enumerate(term.match_fields):
        p = f"{path}.matchFields[{i}]"
        if req.key != "metadata.name":
            errs.add(f"{p}.key", f"{req.key!r} is not supported; only metadata.name")
        check_one_of(errs, f"{p}.operator", req.operator, ("In", "NotIn"), required=True)


def _validate_affinity(errs: Errors, path: str, aff: core_pb2.Affinity) -> None:
    na = aff.node_affinity
    for i, term in enumerate(na.required_during_scheduling_ignored_during_execution.node_selector_terms):
        _validate_node_selector_term(
            errs, f"{path}.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[{i}]", term
        )
    for i, pref in enumerate(na.preferred_during_scheduling_ignored_during_execution):
        p = f"{path}.nodeAffinity.preferredDuringSchedulingIgnoredDuringExecution[{i}]"
        if not 1 <= pref.weight <= 100:
            errs.add(f"{p}.weight", f"{pref.weight} must be between 1 and 100")
        _validate_node_selector_term(errs, f"{p}.preference", pref.preference)
    for name, group in (("podAffinity", aff.pod_affinity), ("podAntiAffinity", aff.pod_anti_affinity)):
        for i, affinity_term in enumerate(group.required_during_scheduling_ignored_during_execution):
            p = f"{path}.{name}.requiredDuringSchedulingIgnoredDuringExecution[{i}]"
            if not affinity_term.topology_key:
                errs.add(f"{p}.topologyKey", "required")
            check_label_selector(errs, f"{p}.labelSelector", affinity_term.label_selector)
        for i, weighted in enumerate(group.preferred_during_scheduling_ignored_during_execution):
            p = f"{path}.{name}.preferredDuringSchedulingIgnoredDuringExecution[{i}]"
            if not 1 <= weighted.weight <= 100:
                errs.add(f"{p}.weight", f"{weighted.weight} must be between 1 and 100")
            if not weighted.pod_affinity_term.topology_key:
                errs.add(f"{p}.podAffinityTerm.topologyKey", "required")


def check_relative_path(errs: Errors, path: str, value: str, *, required: bool = True) -> None:
    """A path inside a directory: relative, without '..' elements (Kubernetes' rule for items[].path and
    subPath; here these paths are joined to host directories, so an escape would write on the host)."""
    if not value:
        if required:
            errs.add(path, "required")
        return
    if value.startswith("/"):
        errs.add(path, f"{value!r} must be a relative path")
    elif ".." in value.split("/"):
        errs.add(path, f"{value!r} must not contain '..'")
    elif "\0" in value:
        errs.add(path, "must not contain NUL")


def check_file_mode(errs: Errors, path: str, mode: int) -> None:
    """File permission bits: 0 to 0777 (no setuid, setgid or sticky bit)."""
    if not 0 <= mode <= 0o777:
        errs.add(path, f"{mode} ({mode:#o}) must be a file mode between 0 and 0777 (511)")


def _validate_projection(
    errs: Errors, path: str, source: core_pb2.ConfigMapVolumeSource | core_pb2.SecretVolumeSource
) -> None:
    if source.HasField("default_mode"):
        check_file_mode(errs, f"{path}.defaultMode", source.default_mode)
    for i, item in enumerate(source.items):
        ip = f"{path}.items[{i}]"
        if not item.key:
            errs.add(f"{ip}.key", "required")
        check_relative_path(errs, f"{ip}.path", item.path)
        if item.path and not [p for p in item.path.split("/") if p not in ("", ".")]:
            errs.add(f"{ip}.path", f"{item.path!r} must name a file")
        if item.HasField("mode"):
            check_file_mode(errs, f"{ip}.mode", item.mode)


def validate_pod_spec(errs: Errors, path: str, spec: core_pb2.PodSpec) -> None:
    """A PodSpec, in a Pod or in a workload's template."""
    volumes: set[str] = set()
    for i, vol in enumerate(spec.volumes):
        vp = f"{path}.volumes[{i}]"
        check_dns1123_label(errs, f"{vp}.name", vol.name)
        if vol.name in volumes:
            errs.add(f"{vp}.name", f"duplicate volume name {vol.name!r}")
        volumes.add(vol.name)
        sources = [f.name for f, _ in vol.ListFields() if f.name != "name"]
        if len(sources) != 1:
            errs.add(vp, "exactly one of hostPath, emptyDir, configMap, secret or persistentVolumeClaim must be set")
        if vol.HasField("persistent_volume_claim"):
            if not vol.persistent_volume_claim.claim_name:
                errs.add(f"{vp}.persistentVolumeClaim.claimName", "required")
            else:
                check_dns1123_subdomain(
                    errs, f"{vp}.persistentVolumeClaim.claimName", vol.persistent_volume_claim.claim_name
                )
        if vol.HasField("host_path") and not vol.host_path.path.startswith("/"):
            errs.add(f"{vp}.hostPath.path", "must be an absolute path")
        if vol.HasField("config_map") and not vol.config_map.name:
            errs.add(f"{vp}.configMap.name", "required")
        if vol.HasField("secret") and not vol.secret.secret_name:
            errs.add(f"{vp}.secret.secretName", "required")
        if vol.HasField("config_map"):
            _validate_projection(errs, f"{vp}.configMap", vol.config_map)
        if vol.HasField("secret"):
            _validate_projection(errs, f"{vp}.secret", vol.secret)
        if vol.empty_dir.size_limit:
            check_quantities(errs, f"{vp}.emptyDir", {"sizeLimit": vol.empty_dir.size_limit})
    if not spec.containers:
        errs.add(f"{path}.containers", "required: at least one container")
    names: set[str] = set()
    for group, containers, init in (
        ("initContainers", spec.init_containers, True),
        ("containers", spec.containers, False),
    ):
        for i, c in enumerate(containers):
            cp = f"{path}.{group}[{i}]"
            _validate_container(errs, cp, c, volumes, init=init)
            if c.name and c.name in names:
                errs.add(f"{cp}.name", f"duplicate container name {c.name!r}")
            names.add(c.name)
    check_one_of(errs, f"{path}.restartPolicy", spec.restart_policy, RESTART_POLICIES)
    if spec.HasField("termination_grace_period_seconds") and spec.termination_grace_period_seconds < 0:
        errs.add(f"{path}.terminationGracePeriodSeconds", "must be greater than or equal to 0")
    if spec.HasField("active_deadline_seconds") and spec.active_deadline_seconds <= 0:
        errs.add(f"{path}.activeDeadlineSeconds", "must be greater than 0")
    check_labels(errs, f"{path}.nodeSelector", spec.node_selector)
    if spec.node_name:
        check_dns1123_subdomain(errs, f"{path}.nodeName", spec.node_name)
    if spec.hostname:
        check_dns1123_label(errs, f"{path}.hostname", spec.hostname)
    for i, tol in enumerate(spec.tolerations):
        tp = f"{path}.tolerations[{i}]"
        check_one_of(errs, f"{tp}.operator", tol.operator, ("Exists", "Equal"))
        check_one_of(errs, f"{tp}.effect", tol.effect, TAINT_EFFECTS)
        if tol.operator == "Exists" and tol.value:
            errs.add(f"{tp}.value", "must be empty when operator is Exists")
        if not tol.key and tol.operator != "Exists":
            errs.add(f"{tp}.operator", "must be Exists when key is empty")
        if tol.HasField("toleration_seconds") and tol.effect != "NoExecute":
            errs.add(f"{tp}.tolerationSeconds", "may only be set when effect is NoExecute")
    _validate_affinity(errs, f"{path}.affinity", spec.affinity)
    for i, tsc in enumerate(spec.topology_spread_constraints):
        tp = f"{path}.topologySpreadConstraints[{i}]"
        if tsc.max_skew <= 0:
            errs.add(f"{tp}.maxSkew", f"{tsc.max_skew} must be greater than 0")
        if not tsc.topology_key:
            errs.add(f"{tp}.topologyKey", "required")
        check_one_of(
            errs, f"{tp}.whenUnsatisfiable", tsc.when_unsatisfiable, ("DoNotSchedule", "ScheduleAnyway"), required=True
        )


def _validate_pod(errs: Errors, pod: core_pb2.Pod) -> None:
    validate_pod_spec(errs, "spec", pod.spec)
    if pod.spec.priority_class_name:
        check_dns1123_subdomain(errs, "spec.priorityClassName", pod.spec.priority_class_name)
    if pod.spec.HasField("preemption_policy"):
        check_one_of(errs, "spec.preemptionPolicy", pod.spec.preemption_policy, PREEMPTION_POLICIES)
    check_one_of(errs, "status.phase", pod.status.phase, ("Pending", "Running", "Succeeded", "Failed", "Unknown"))


# ------------------------------------------------------------------- workloads


def _validate_template(
    errs: Errors, path: str, selector: meta_pb2.LabelSelector, template: core_pb2.PodTemplateSpec
) -> None:
    if not selector.match_labels and not selector.match_expressions:
        errs.add("spec.selector", "required: an empty selector would select every pod")
    check_label_selector(errs, "spec.selector", selector)
    check_labels(errs, f"{path}.metadata.labels", template.metadata.labels)
    try:
        if (selector.match_labels or selector.match_expressions) and not from_label_selector_message(selector).matches(
            template.metadata.labels
        ):
            errs.add(f"{path}.metadata.labels", "`selector` does not match template `labels`")
    except InvalidError:
        pass  # the operator was already reported
    validate_pod_spec(errs, f"{path}.spec", template.spec)


def _check_replicas(errs: Errors, msg: Message) -> None:
    spec = msg.spec  # type: ignore[attr-defined]
    if spec.HasField("replicas") and spec.replicas < 0:
        errs.add("spec.replicas", f"{spec.replicas} must be greater than or equal to 0")
    if spec.min_ready_seconds < 0:
        errs.add("spec.minReadySeconds", "must be greater than or equal to 0")


def _validate_replicaset(errs: Errors, rs: apps_pb2.ReplicaSet) -> None:
    _check_replicas(errs, rs)
    _validate_template(errs, "spec.template", rs.spec.selector, rs.spec.template)
    check_one_of(errs, "spec.template.spec.restartPolicy", rs.spec.template.spec.restart_policy, ("Always",))


def _validate_deployment(errs: Errors, d: apps_pb2.Deployment) -> None:
    _check_replicas(errs, d)
    _validate_template(errs, "spec.template", d.spec.selector, d.spec.template)
    check_one_of(errs, "spec.template.spec.restartPolicy", d.spec.template.spec.restart_policy, ("Always",))
    check_one_of(errs, "spec.strategy.type", d.spec.strategy.type, ("RollingUpdate", "Recreate"))
    ru = d.spec.strategy.rolling_update
    if d.spec.strategy.type == "Recreate" and d.spec.strategy.HasField("rolling_update"):
        errs.add("spec.strategy.rollingUpdate", "may not be specified when strategy type is Recreate")
    check_int_or_percent(errs, "spec.strategy.rollingUpdate.maxSurge", ru.max_surge)
    check_int_or_percent(errs, "spec.strategy.rollingUpdate.maxUnavailable", ru.max_unavailable)
    if (
        _is_zero(ru.max_surge)
        and _is_zero(ru.max_unavailable)
        and ru.HasField("max_surge")
        and ru.HasField("max_unavailable")
    ):
        errs.add("spec.strategy.rollingUpdate.maxUnavailable", "may not be 0 when maxSurge is 0")
    if d.spec.HasField("revision_history_limit") and d.spec.revision_history_limit < 0:
        errs.add("spec.revisionHistoryLimit", "must be greater than or equal to 0")
    if d.spec.HasField("progress_deadline_seconds") and d.spec.progress_deadline_seconds <= d.spec.min_ready_seconds:
        errs.add("spec.progressDeadlineSeconds", "must be greater than minReadySeconds")


def _is_zero(v: struct_pb2.Value) -> bool:
    return (v.WhichOneof("kind") == "number_value" and v.number_value == 0) or v.string_value in ("0", "0%")


def _validate_daemonset(errs: Errors, ds: apps_pb2.DaemonSet) -> None:
    _validate_template(errs, "spec.template", ds.spec.selector, ds.spec.template)
    check_one_of(errs, "spec.template.spec.restartPolicy", ds.spec.template.spec.restart_policy, ("Always",))
    check_one_of(errs, "spec.updateStrategy.type", ds.spec.update_strategy.type, ("RollingUpdate", "OnDelete"))
    check_int_or_percent(
        errs, "spec.updateStrategy.rollingUpdate.maxUnavailable", ds.spec.update_strategy.rolling_update.max_unavailable
    )


def _validate_job(errs: Errors, job: batch_pb2.Job) -> None:
    if len(job.metadata.name) > 63:
        # As in Kubernetes: the Job's pods carry its name as the job-name label, whose values stop at 63.
        errs.add("metadata.name", "must be no more than 63 characters (its pods carry it in the job-name label)")
        return
    _validate_job_spec(errs, "spec", job.spec)
    _validate_template(errs, "spec.template", job.spec.selector, job.spec.template)


MAX_INDEXED_COMPLETIONS = 100_000


def _validate_job_spec(errs: Errors, path: str, spec: batch_pb2.JobSpec) -> None:
    """A Job's spec apart from its selector (a CronJob's job template has none: each Job gets its own)."""
    for field, camel in (
        ("parallelism", "parallelism"),
        ("completions", "completions"),
        ("backoff_limit", "backoffLimit"),
        ("ttl_seconds_after_finished", "ttlSecondsAfterFinished"),
    ):
        if spec.HasField(field) and getattr(spec, field) < 0:  # type: ignore[arg-type]
            errs.add(f"{path}.{camel}", "must be greater than or equal to 0")
    if spec.HasField("active_deadline_seconds") and spec.active_deadline_seconds <= 0:
        errs.add(f"{path}.activeDeadlineSeconds", "must be greater than 0")
    check_one_of(errs, f"{path}.completionMode", spec.completion_mode, ("NonIndexed", "Indexed"))
    if spec.completion_mode == "Indexed" and not spec.HasField("completions"):
        errs.add(f"{path}.completions", "required when completionMode is Indexed")
    if spec.completion_mode == "Indexed":
        # As Kubernetes: an Indexed Job's pods are tracked one index at a time, so both stay bounded.
        for name, value in (("completions", spec.completions), ("parallelism", spec.parallelism)):
            if value > MAX_INDEXED_COMPLETIONS:
                errs.add(f"{path}.{name}", f"must be at most {MAX_INDEXED_COMPLETIONS} when completionMode is Indexed")
    if spec.HasField("backoff_limit_per_index"):
        if spec.completion_mode != "Indexed":
            errs.add(f"{path}.backoffLimitPerIndex", "requires completionMode Indexed")
        if spec.backoff_limit_per_index < 0:
            errs.add(f"{path}.backoffLimitPerIndex", "must be greater than or equal to 0")
    if spec.HasField("max_failed_indexes"):
        if not spec.HasField("backoff_limit_per_index"):
            errs.add(f"{path}.maxFailedIndexes", "requires backoffLimitPerIndex")
        if spec.max_failed_indexes < 0 or spec.max_failed_indexes > spec.completions:
            errs.add(f"{path}.maxFailedIndexes", "must be between 0 and completions")
    check_one_of(
        errs,
        f"{path}.template.spec.restartPolicy",
        spec.template.spec.restart_policy,
        ("OnFailure", "Never"),
        required=True,
    )


def _validate_cronjob(errs: Errors, cj: batch_pb2.CronJob) -> None:
    spec = cj.spec
    if len(cj.metadata.name) > 52:
        # As in Kubernetes: its Jobs are named <name>-<minutes since the epoch>, which must stay within 63.
        errs.add("metadata.name", "must be no more than 52 characters (its Jobs add an 11-character suffix)")
    try:
        cronschedule.expand(spec.schedule)
    except ValueError as e:
        errs.add("spec.schedule", str(e))
    if spec.HasField("time_zone"):
        try:
            cronschedule.time_zone(spec.time_zone)
        except ValueError as e:
            errs.add("spec.timeZone", str(e))
    check_one_of(errs, "spec.concurrencyPolicy", spec.concurrency_policy, ("Allow", "Forbid", "Replace"))
    if spec.HasField("starting_deadline_seconds") and spec.starting_deadline_seconds < 0:
        errs.add("spec.startingDeadlineSeconds", "must be greater than or equal to 0")
    for field, camel in (
        ("successful_jobs_history_limit", "successfulJobsHistoryLimit"),
        ("failed_jobs_history_limit", "failedJobsHistoryLimit"),
    ):
        if spec.HasField(field) and getattr(spec, field) < 0:  # type: ignore[arg-type]
            errs.add(f"spec.{camel}", "must be greater than or equal to 0")
    template = spec.job_template
    check_labels(errs, "spec.jobTemplate.metadata.labels", template.metadata.labels)
    if template.spec.HasField("selector") and template.spec.selector.ByteSize():
        errs.add("spec.jobTemplate.spec.selector", "may not be set: each Job gets a selector of its own")
    _validate_job_spec(errs, "spec.jobTemplate.spec", template.spec)
    check_labels(errs, "spec.jobTemplate.spec.template.metadata.labels", template.spec.template.metadata.labels)
    validate_pod_spec(errs, "spec.jobTemplate.spec.template.spec", template.spec.template.spec)


def _validate_pdb(errs: Errors, pdb: policy_pb2.PodDisruptionBudget) -> None:
    spec = pdb.spec
    has_min = spec.HasField("min_available")
    has_max = spec.HasField("max_unavailable")
    if has_min and has_max:
        errs.add("spec", "minAvailable and maxUnavailable cannot be both set")
    check_int_or_percent(errs, "spec.minAvailable", spec.min_available)
    check_int_or_percent(errs, "spec.maxUnavailable", spec.max_unavailable)
    for path, value in (("spec.minAvailable", spec.min_available), ("spec.maxUnavailable", spec.max_unavailable)):
        text = value.string_value if value.WhichOneof("kind") == "string_value" else ""
        if text.endswith("%") and text[:-1].isdigit() and int(text[:-1]) > 100:
            errs.add(path, f"{text!r} must not be greater than 100%")
    check_label_selector(errs, "spec.selector", spec.selector)
    check_one_of(
        errs, "spec.unhealthyPodEvictionPolicy", spec.unhealthy_pod_eviction_policy, ("IfHealthyBudget", "AlwaysAllow")
    )


HPA_TARGET_KINDS = ("Deployment", "StatefulSet", "ReplicaSet")
HPA_RESOURCES = ("cpu", "memory")
MAX_HPA_PERIOD = 1800
MAX_HPA_WINDOW = 3600


def _validate_hpa_rules(errs: Errors, path: str, rules: autoscaling_pb2.HPAScalingRules) -> None:
    if rules.HasField("stabilization_window_seconds") and not 0 <= rules.stabilization_window_seconds <= MAX_HPA_WINDOW:
        errs.add(f"{path}.stabilizationWindowSeconds", f"must be between 0 and {MAX_HPA_WINDOW}")
    check_one_of(errs, f"{path}.selectPolicy", rules.select_policy, ("Max", "Min", "Disabled"))
    for i, policy in enumerate(rules.policies):
        check_one_of(errs, f"{path}.policies[{i}].type", policy.type, ("Pods", "Percent"), required=True)
        if policy.value <= 0:
            errs.add(f"{path}.policies[{i}].value", "must be greater than 0")
        if not 0 < policy.period_seconds <= MAX_HPA_PERIOD:
            errs.add(f"{path}.policies[{i}].periodSeconds", f"must be between 1 and {MAX_HPA_PERIOD}")


def _validate_hpa(errs: Errors, hpa: autoscaling_pb2.HorizontalPodAutoscaler) -> None:
    spec = hpa.spec
    ref = spec.scale_target_ref
    check_one_of(errs, "spec.scaleTargetRef.kind", ref.kind, HPA_TARGET_KINDS, required=True)
    if not ref.name:
        errs.add("spec.scaleTargetRef.name", "is required")
    else:
        check_dns1123_subdomain(errs, "spec.scaleTargetRef.name", ref.name)
    minimum = spec.min_replicas if spec.HasField("min_replicas") else 1
    if minimum < 1:
        errs.add("spec.minReplicas", "must be at least 1")
    if spec.max_replicas < max(1, minimum):
        errs.add("spec.maxReplicas", f"must be at least minReplicas ({minimum})")
    if not spec.metrics:
        errs.add("spec.metrics", "at least one metric is required (e.g. cpu Utilization)")
    for i, metric in enumerate(spec.metrics):
        path = f"spec.metrics[{i}]"
        check_one_of(errs, f"{path}.type", metric.type, ("Resource",), required=True)
        check_one_of(errs, f"{path}.resource.name", metric.resource.name, HPA_RESOURCES, required=True)
        target = metric.resource.target
        check_one_of(errs, f"{path}.resource.target.type", target.type, ("Utilization", "AverageValue"), required=True)
        if target.type == "Utilization":
            if not target.HasField("average_utilization") or target.average_utilization <= 0:
                errs.add(f"{path}.resource.target.averageUtilization", "must be greater than 0 (percent of requests)")
        elif target.type == "AverageValue":
            try:
                if parse_quantity(target.average_value) <= 0:
                    errs.add(f"{path}.resource.target.averageValue", "must be greater than 0")
            except ValueError as err:
                errs.add(f"{path}.resource.target.averageValue", str(err))
    _validate_hpa_rules(errs, "spec.behavior.scaleUp", spec.behavior.scale_up)
    _validate_hpa_rules(errs, "spec.behavior.scaleDown", spec.behavior.scale_down)


PREEMPTION_POLICIES = ("PreemptLowerPriority", "Never")
HIGHEST_USER_PRIORITY = 1_000_000_000
"""User PriorityClasses stop here; above are the built-in system-* classes (Kubernetes' limits)."""


def _validate_priority_class(errs: Errors, pc: scheduling_pb2.PriorityClass) -> None:
    system = pc.metadata.name.startswith("system-")
    if system and pc.metadata.name not in SYSTEM_PRIORITY_CLASSES:
        errs.add("metadata.name", "the prefix 'system-' is reserved for the built-in priority classes")
    elif system and pc.value != SYSTEM_PRIORITY_CLASSES[pc.metadata.name]:
        errs.add("value", f"must be {SYSTEM_PRIORITY_CLASSES[pc.metadata.name]} for {pc.metadata.name}")
    elif not system and pc.value > HIGHEST_USER_PRIORITY:
        errs.add("value", f"must be no more than {HIGHEST_USER_PRIORITY} (higher values are the system classes')")
    if pc.HasField("preemption_policy"):
        check_one_of(errs, "preemptionPolicy", pc.preemption_policy, PREEMPTION_POLICIES)
    if len(pc.description) > 1024:
        errs.add("description", "must be no more than 1024 characters")


SYSTEM_PRIORITY_CLASSES = {"system-cluster-critical": 2_000_000_000, "system-node-critical": 2_000_001_000}


ACCESS_MODES = ("ReadWriteOnce", "ReadOnlyMany", "ReadWriteMany", "ReadWriteOncePod")
LOCAL_VOLUME_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")


def _validate_claim_spec(errs: Errors, path: str, spec: core_pb2.PersistentVolumeClaimSpec) -> None:
    if not spec.access_modes:
        errs.add(f"{path}.accessModes", "required: at least one access mode")
    for i, mode in enumerate(spec.access_modes):
        check_one_of(errs, f"{path}.accessModes[{i}]", mode, ACCESS_MODES)
    storage = spec.resources.requests.get("storage", "")
    if not storage:
        errs.add(f"{path}.resources.requests.storage", "required")
    else:
        check_quantities(errs, f"{path}.resources.requests", {"storage": storage})
        with contextlib.suppress(ValueError):
            if parse_quantity(storage) <= 0:
                errs.add(f"{path}.resources.requests.storage", "must be greater than zero")
    if spec.HasField("storage_class_name") and spec.storage_class_name:
        check_dns1123_subdomain(errs, f"{path}.storageClassName", spec.storage_class_name)
    check_one_of(errs, f"{path}.volumeMode", spec.volume_mode, ("Filesystem",))
    if spec.volume_name:
        check_dns1123_subdomain(errs, f"{path}.volumeName", spec.volume_name)


def _validate_pvc(errs: Errors, pvc: core_pb2.PersistentVolumeClaim) -> None:
    _validate_claim_spec(errs, "spec", pvc.spec)
    check_one_of(errs, "status.phase", pvc.status.phase, ("Pending", "Bound", "Lost"))


def _validate_pv(errs: Errors, pv: core_pb2.PersistentVolume) -> None:
    spec = pv.spec
    storage = spec.capacity.get("storage", "")
    if not storage:
        errs.add("spec.capacity.storage", "required")
    check_quantities(errs, "spec.capacity", dict(spec.capacity))
    for i, mode in enumerate(spec.access_modes):
        check_one_of(errs, f"spec.accessModes[{i}]", mode, ACCESS_MODES)
    check_one_of(
        errs, "spec.persistentVolumeReclaimPolicy", spec.persistent_volume_reclaim_policy, ("Retain", "Delete")
    )
    if not spec.HasField("local"):
        errs.add("spec.local", "required: Navarch's persistent volumes are directories on one node")
    elif not LOCAL_VOLUME_NAME.match(spec.local.path) or ".." in spec.local.path:
        # The agent joins it to its own volume root: one plain name, never a path that could leave it.
        errs.add(
            "spec.local.path", f"{spec.local.path[:80]!r} must be one directory name (lower case, digits, '-', '.')"
        )
    terms = spec.node_affinity.required.node_selector_terms
    if spec.HasField("local") and not terms:
        errs.add("spec.nodeAffinity.required", "required for a local volume: the node that holds it")
    for i, term in enumerate(terms):
        _validate_node_selector_term(errs, f"spec.nodeAffinity.required.nodeSelectorTerms[{i}]", term)
    check_one_of(errs, "status.phase", pv.status.phase, ("Pending", "Available", "Bound", "Released", "Failed"))


def _validate_statefulset(errs: Errors, sts: apps_pb2.StatefulSet) -> None:
    spec = sts.spec
    if len(sts.metadata.name) > 52:
        # Its pods are <name>-<ordinal> and carry that in a label (63 at most), as Kubernetes warns.
        errs.add("metadata.name", "must be no more than 52 characters (its pods add -<ordinal>)")
    _check_replicas(errs, sts)
    # The claim templates are the pods' volumes too (the controller adds them): validate with them in place.
    template = core_pb2.PodTemplateSpec()
    template.CopyFrom(spec.template)
    for claim in spec.volume_claim_templates:
        if claim.metadata.name and not any(v.name == claim.metadata.name for v in template.spec.volumes):
            vol = template.spec.volumes.add(name=claim.metadata.name)
            vol.persistent_volume_claim.claim_name = f"{claim.metadata.name}-{sts.metadata.name or 'x'}-0"
    _validate_template(errs, "spec.template", spec.selector, template)
    check_one_of(errs, "spec.template.spec.restartPolicy", spec.template.spec.restart_policy, ("Always",))
    check_one_of(errs, "spec.podManagementPolicy", spec.pod_management_policy, ("OrderedReady", "Parallel"))
    strategy = spec.update_strategy
    check_one_of(errs, "spec.updateStrategy.type", strategy.type, ("RollingUpdate", "OnDelete"))
    ru = strategy.rolling_update
    if ru.HasField("partition") and ru.partition < 0:
        errs.add("spec.updateStrategy.rollingUpdate.partition", "must be greater than or equal to 0")
    check_int_or_percent(errs, "spec.updateStrategy.rollingUpdate.maxUnavailable", ru.max_unavailable)
    if ru.max_unavailable.WhichOneof("kind") == "number_value" and ru.max_unavailable.number_value < 1:
        errs.add("spec.updateStrategy.rollingUpdate.maxUnavailable", "must be at least 1")
    if spec.service_name:
        check_dns1123_label(errs, "spec.serviceName", spec.service_name)
    policy = spec.persistent_volume_claim_retention_policy
    check_one_of(
        errs, "spec.persistentVolumeClaimRetentionPolicy.whenDeleted", policy.when_deleted, ("Retain", "Delete")
    )
    check_one_of(errs, "spec.persistentVolumeClaimRetentionPolicy.whenScaled", policy.when_scaled, ("Retain", "Delete"))
    names: set[str] = set()
    volumes = {v.name for v in spec.template.spec.volumes}
    for i, claim in enumerate(spec.volume_claim_templates):
        cp = f"spec.volumeClaimTemplates[{i}]"
        check_dns1123_label(errs, f"{cp}.metadata.name", claim.metadata.name)
        if claim.metadata.name in names:
            errs.add(f"{cp}.metadata.name", f"duplicate claim template {claim.metadata.name!r}")
        if claim.metadata.name in volumes:
            errs.add(f"{cp}.metadata.name", f"a pod volume is already named {claim.metadata.name!r}")
        names.add(claim.metadata.name)
        _validate_claim_spec(errs, f"{cp}.spec", claim.spec)


def _validate_controller_revision(errs: Errors, rev: apps_pb2.ControllerRevision) -> None:
    if rev.revision < 0:
        errs.add("revision", "must be greater than or equal to 0")


# ---------------------------------------------------------- the other kinds


def _validate_service(errs: Errors, svc: core_pb2.Service) -> None:
    spec = svc.spec
    check_one_of(errs, "spec.type", spec.type, SERVICE_TYPES)
    headless = spec.cluster_ip == "None"
    if spec.type == "ExternalName":
        check_dns1123_subdomain(errs, "spec.externalName", spec.external_name)
    elif not spec.ports and not headless:
        errs.add("spec.ports", "required: at least one port")
    if spec.cluster_ip and not headless:
        try:
            ipaddress.IPv4Address(spec.cluster_ip)
        except ValueError:
            errs.add("spec.clusterIP", f"{spec.cluster_ip!r} must be an IPv4 address, 'None' or empty")
    if headless and spec.type == "NodePort":
        errs.add("spec.clusterIP", "may not be 'None' for a NodePort service")
    names: set[str] = set()
    seen: set[tuple[int, str]] = set()
    for i, port in enumerate(spec.ports):
        pp = f"spec.ports[{i}]"
        check_port(errs, f"{pp}.port", port.port)
        check_one_of(errs, f"{pp}.protocol", port.protocol, PROTOCOLS)
        check_int_or_string_port(errs, f"{pp}.targetPort", port.target_port, required=False)
        if port.node_port:
            if spec.type != "NodePort":
                errs.add(f"{pp}.nodePort", "may only be set when type is NodePort")
            check_port(errs, f"{pp}.nodePort", port.node_port)
        if len(spec.ports) > 1 and not port.name:
            errs.add(f"{pp}.name", "required when there is more than one port")
        if port.name:
            check_dns1123_label(errs, f"{pp}.name", port.name)
            if port.name in names:
                errs.add(f"{pp}.name", f"duplicate port name {port.name!r}")
            names.add(port.name)
        key = (port.port, port.protocol or "TCP")
        if key in seen:
            errs.add(f"{pp}.port", f"duplicate port {port.port}/{key[1]}")
        seen.add(key)
    check_labels(errs, "spec.selector", spec.selector)
    check_one_of(errs, "spec.sessionAffinity", spec.session_affinity, ("None", "ClientIP"))
    timeout = spec.session_affinity_config.client_ip
    if timeout.HasField("timeout_seconds") and not 0 < timeout.timeout_seconds <= 86400:
        errs.add("spec.sessionAffinityConfig.clientIP.timeoutSeconds", "must be between 1 and 86400")


def _validate_endpoints(errs: Errors, ep: core_pb2.Endpoints) -> None:
    for i, subset in enumerate(ep.subsets):
        for group, addrs in (("addresses", subset.addresses), ("notReadyAddresses", subset.not_ready_addresses)):
            for j, addr in enumerate(addrs):
                try:
                    ipaddress.ip_address(addr.ip)
                except ValueError:
                    errs.add(f"subsets[{i}].{group}[{j}].ip", f"{addr.ip!r} must be an IP address")
        for j, port in enumerate(subset.ports):
            check_port(errs, f"subsets[{i}].ports[{j}].port", port.port)
            check_one_of(errs, f"subsets[{i}].ports[{j}].protocol", port.protocol, PROTOCOLS)


def _validate_data_keys(errs: Errors, path: str, keys: Iterable[str]) -> None:
    for key in sorted(keys):
        if len(key) > 253 or not _CONFIG_KEY.match(key):
            errs.add(f"{path}[{key}]", "a key must consist of letters, digits, '-', '_' or '.'")


def _validate_configmap(errs: Errors, cm: core_pb2.ConfigMap) -> None:
    _validate_data_keys(errs, "data", cm.data)
    _validate_data_keys(errs, "binaryData", cm.binary_data)
    for key in sorted(set(cm.data) & set(cm.binary_data)):
        errs.add(f"binaryData[{key}]", "duplicate of a key in data")


def _validate_secret(errs: Errors, secret: core_pb2.Secret) -> None:
    _validate_data_keys(errs, "data", secret.data)
    _validate_data_keys(errs, "stringData", secret.string_data)


def _validate_node(errs: Errors, node: core_pb2.Node) -> None:
    for i, taint in enumerate(node.spec.taints):
        check_qualified_key(errs, f"spec.taints[{i}].key", taint.key)
        check_one_of(errs, f"spec.taints[{i}].effect", taint.effect, TAINT_EFFECTS, required=True)
    check_quantities(errs, "status.capacity", node.status.capacity)
    check_quantities(errs, "status.allocatable", node.status.allocatable)


def _validate_namespace(errs: Errors, ns: core_pb2.Namespace) -> None:
    check_one_of(errs, "status.phase", ns.status.phase, ("Active", "Terminating"))


def _validate_event(errs: Errors, ev: core_pb2.Event) -> None:
    if not ev.involved_object.kind or not ev.involved_object.name:
        errs.add("involvedObject", "kind and name are required")
    check_one_of(errs, "type", ev.type, ("Normal", "Warning"))


def _validate_lease(errs: Errors, lease: coordination_pb2.Lease) -> None:
    if lease.spec.HasField("lease_duration_seconds") and lease.spec.lease_duration_seconds <= 0:
        errs.add("spec.leaseDurationSeconds", "must be greater than 0")


RBAC_VERBS = (
    "get",
    "list",
    "watch",
    "create",
    "update",
    "patch",
    "delete",
    "deletecollection",
    "bind",
    "escalate",
    "*",
)
SUBJECT_KINDS = ("User", "Group", "ServiceAccount")


def _validate_rules(errs: Errors, rules: Iterable[rbac_pb2.PolicyRule], *, cluster: bool = False) -> None:
    for i, rule in enumerate(rules):
        if not rule.verbs:
            errs.add(f"rules[{i}].verbs", "at least one verb is required")
        for j, verb in enumerate(rule.verbs):
            check_one_of(errs, f"rules[{i}].verbs[{j}]", verb, RBAC_VERBS, required=True)
        if rule.non_resource_urls:
            if not cluster:
                errs.add(f"rules[{i}].nonResourceURLs", "only a ClusterRole may grant non-resource URLs")
            if rule.resources or rule.api_groups or rule.resource_names:
                errs.add(f"rules[{i}].nonResourceURLs", "a rule names resources or non-resource URLs, not both")
            for j, url in enumerate(rule.non_resource_urls):
                if url != "*" and (not url.startswith("/") or len(url) > 1024 or "*" in url[:-1]):
                    errs.add(
                        f"rules[{i}].nonResourceURLs[{j}]",
                        f"{url[:40]!r} must be a path (/metrics), a prefix ending in * (/metrics/*), or *",
                    )
            continue
        if not rule.resources:
            errs.add(f"rules[{i}].resources", 'at least one resource is required ("*" for all)')
        for j, resource in enumerate(rule.resources):
            if not resource or resource.count("/") > 1:
                errs.add(f"rules[{i}].resources[{j}]", f"{resource!r} must be a plural name, optionally /subresource")


def _validate_role(errs: Errors, role: rbac_pb2.Role | rbac_pb2.ClusterRole) -> None:
    _validate_rules(errs, role.rules, cluster=isinstance(role, rbac_pb2.ClusterRole))


def _validate_binding(errs: Errors, binding: rbac_pb2.RoleBinding) -> None:
    ref = binding.role_ref
    allowed = ("Role", "ClusterRole") if isinstance(binding, rbac_pb2.RoleBinding) else ("ClusterRole",)
    check_one_of(errs, "roleRef.kind", ref.kind, allowed, required=True)
    if not ref.name:
        errs.add("roleRef.name", "required")
    for i, subject in enumerate(binding.subjects):
        check_one_of(errs, f"subjects[{i}].kind", subject.kind, SUBJECT_KINDS, required=True)
        if not subject.name:
            errs.add(f"subjects[{i}].name", "required")
        if (
            subject.kind == "ServiceAccount"
            and not subject.namespace
            and isinstance(binding, rbac_pb2.ClusterRoleBinding)
        ):
            errs.add(f"subjects[{i}].namespace", "required for a ServiceAccount")


_BY_KIND: dict[str, Callable[[Errors, Message], None]] = {
    "Role": _validate_role,  # type: ignore[dict-item]
    "ClusterRole": _validate_role,  # type: ignore[dict-item]
    "RoleBinding": _validate_binding,  # type: ignore[dict-item]
    "ClusterRoleBinding": _validate_binding,  # type: ignore[dict-item]
    "Pod": _validate_pod,  # type: ignore[dict-item]
    "ReplicaSet": _validate_replicaset,  # type: ignore[dict-item]
    "Deployment": _validate_deployment,  # type: ignore[dict-item]
    "DaemonSet": _validate_daemonset,  # type: ignore[dict-item]
    "Job": _validate_job,  # type: ignore[dict-item]
    "CronJob": _validate_cronjob,  # type: ignore[dict-item]
    "PodDisruptionBudget": _validate_pdb,  # type: ignore[dict-item]
    "HorizontalPodAutoscaler": _validate_hpa,  # type: ignore[dict-item]
    "PriorityClass": _validate_priority_class,  # type: ignore[dict-item]
    "PersistentVolumeClaim": _validate_pvc,  # type: ignore[dict-item]
    "PersistentVolume": _validate_pv,  # type: ignore[dict-item]
    "StatefulSet": _validate_statefulset,  # type: ignore[dict-item]
    "ControllerRevision": _validate_controller_revision,  # type: ignore[dict-item]
    "Service": _validate_service,  # type: ignore[dict-item]
    "Endpoints": _validate_endpoints,  # type: ignore[dict-item]
    "ConfigMap": _validate_configmap,  # type: ignore[dict-item]
    "Secret": _validate_secret,  # type: ignore[dict-item]
    "Node": _validate_node,  # type: ignore[dict-item]
    "Namespace": _validate_namespace,  # type: ignore[dict-item]
    "Event": _validate_event,  # type: ignore[dict-item]
    "Lease": _validate_lease,  # type: ignore[dict-item]
}


def validate(obj: Message) -> None:
    """Check one object on its own; raise ``InvalidError`` listing every problem."""
    info = kinds.of_message(obj)
    errs = Errors()
    api_version, kind = obj.api_version, obj.kind  # type: ignore[attr-defined]
    if api_version and api_version != info.api_version:
        errs.add("apiVersion", f"{api_version!r} is not the apiVersion of {info.kind} ({info.api_version})")
    if kind and kind != info.kind:
        errs.add("kind", f"{kind!r} does not match the object ({info.kind})")
    validate_metadata(errs, info, meta(obj))
    _BY_KIND[info.kind](errs, obj)
    size = obj.ByteSize()
    if size > MAX_OBJECT_BYTES:
        errs.add("<object>", f"is {size} bytes; the limit is {MAX_OBJECT_BYTES}")
    errs.raise_for(obj)
