"""Output: Kubernetes-style tables per kind, and yaml, json, name and jsonpath formats."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import tabulate as tabulate_module
import yaml
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp
from jsonpath_ng.exceptions import JsonPathParserError
from jsonpath_ng.ext.parser import parse as jsonpath_parse
from tabulate import DataRow, TableFormat, tabulate

from controlplane.api import conditions, kinds
from controlplane.api.errors import InvalidError
from controlplane.api.objects import meta, typed_manifest
from controlplane.api.pb import autoscaling_pb2, batch_pb2, core_pb2, policy_pb2

Column = tuple[str, Callable[[Any], str]]

# kubectl's layout: left-aligned columns three spaces apart, no rules, no extra header padding.
tabulate_module.MIN_PADDING = 0
_KUBECTL = TableFormat(
    lineabove=None,
    linebelowheader=None,
    linebetweenrows=None,
    linebelow=None,
    headerrow=DataRow("", "   ", ""),
    datarow=DataRow("", "   ", ""),
    padding=0,
    with_header_hide=None,
)


def age(ts: Timestamp, now: datetime | None = None) -> str:
    """Kubernetes' short age: 45s, 12m, 3h, 2d."""
    if not ts.seconds:
        return "<unknown>"
    now = now or datetime.now(UTC)
    seconds = max(0, int(now.timestamp() - ts.seconds))
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 3600 * 3:
        return f"{seconds // 60}m"
    if seconds < 86400 * 2:
        return f"{seconds // 3600}h"
    return f"{seconds // 86400}d"


def _age(o: Any) -> str:
    return age(meta(o).creation_timestamp)


def _pod_ready(p: core_pb2.Pod) -> str:
    ready = sum(1 for s in p.status.container_statuses if s.ready)
    return f"{ready}/{len(p.spec.containers)}"


def _pod_status(p: core_pb2.Pod) -> str:
    if meta(p).HasField("deletion_timestamp"):
        return "Terminating"
    for s in p.status.container_statuses:
        if s.state.HasField("waiting") and s.state.waiting.reason:
            return s.state.waiting.reason
        if s.state.HasField("terminated") and s.state.terminated.reason and p.status.phase != "Succeeded":
            return s.state.terminated.reason
    return p.status.reason or p.status.phase or "Pending"


def _pod_restarts(p: core_pb2.Pod) -> str:
    return str(sum(s.restart_count for s in p.status.container_statuses))


def _node_status(n: core_pb2.Node) -> str:
    ready = conditions.find(n.status.conditions, "Ready")
    status = "Unknown" if ready is None else ("Ready" if ready.status == "True" else "NotReady")
    return status + (",SchedulingDisabled" if n.spec.unschedulable else "")


def _node_roles(n: core_pb2.Node) -> str:
    roles = sorted(k.split("/", 1)[1] for k in meta(n).labels if k.startswith("node-role.kubernetes.io/"))
    return ",".join(roles) or "<none>"


def _node_ip(n: core_pb2.Node) -> str:
    return next((a.address for a in n.status.addresses if a.type == "InternalIP"), "<none>")


def _svc_ports(s: core_pb2.Service) -> str:
    parts = []
    for p in s.spec.ports:
        text = f"{p.port}:{p.node_port}" if p.node_port else str(p.port)
        parts.append(f"{text}/{p.protocol or 'TCP'}")
    return ",".join(parts) or "<none>"


def _endpoints(e: core_pb2.Endpoints) -> str:
    addrs = [f"{a.ip}:{p.port}" for s in e.subsets for a in s.addresses for p in (s.ports or [core_pb2.EndpointPort()])]
    if not addrs:
        return "<none>"
    shown = ",".join(addrs[:3])
    return shown + (f" + {len(addrs) - 3} more..." if len(addrs) > 3 else "")


def _selector(sel: Any) -> str:
    parts = [f"{k}={v}" for k, v in sorted(sel.match_labels.items())]
    parts += [f"{e.key} {e.operator.lower()} ({','.join(e.values)})" for e in sel.match_expressions]
    return ",".join(parts) or "<none>"


def _job_status(j: batch_pb2.Job) -> str:
    for c in j.status.conditions:
        if c.status == "True" and c.type in ("Complete", "Failed", "Suspended"):
            return c.type
    return "Running"


def _pod_ports(p: core_pb2.Pod) -> str:
    """Named ports as the processes got them (a port the node allocates shows once it has), e.g. http:20417."""
    allocated = {(st.name, a.name): a.container_port for st in p.status.container_statuses for a in st.allocated_ports}
    shown = []
    for c in p.spec.containers:
        for port in c.ports:
            number = port.container_port or allocated.get((c.name, port.name), 0)
            shown.append(f"{port.name}:{number or '<pending>'}" if port.name else str(number))
    return ",".join(shown) or "<none>"


def _job_duration(j: batch_pb2.Job) -> str:
    if not j.status.start_time.seconds:
        return ""
    end = j.status.completion_time if j.status.completion_time.seconds else None
    finish = datetime.fromtimestamp(end.seconds, UTC) if end else datetime.now(UTC)
    start = Timestamp(seconds=j.status.start_time.seconds)
    return age(start, finish)


def _cronjob_last_schedule(c: batch_pb2.CronJob) -> str:
    return age(c.status.last_schedule_time) if c.status.last_schedule_time.seconds else "<none>"


def _containers(spec: core_pb2.PodSpec) -> str:
    return ",".join(c.name for c in spec.containers) or "<none>"


def _images(spec: core_pb2.PodSpec) -> str:
    return ",".join(c.image or "<none>" for c in spec.containers) or "<none>"


def _int_or_string(v: Any, present: bool) -> str:
    if not present:
        return "N/A"
    return v.string_value if v.WhichOneof("kind") == "string_value" else str(int(v.number_value))


def _hpa_targets(h: autoscaling_pb2.HorizontalPodAutoscaler) -> str:
    """``cpu: 45%/50%, memory: <unknown>/200Mi`` as kubectl prints them."""
    current = {m.resource.name: m.resource.current for m in h.status.current_metrics}
    parts = []
    for m in h.spec.metrics:
        name, target = m.resource.name, m.resource.target
        seen = current.get(name)
        if target.type == "Utilization":
            now = (
                f"{seen.average_utilization}%"
                if seen is not None and seen.HasField("average_utilization")
                else "<unknown>"
            )
            parts.append(f"{name}: {now}/{target.average_utilization}%")
        else:
            now = seen.average_value if seen is not None and seen.average_value else "<unknown>"
            parts.append(f"{name}: {now}/{target.average_value}")
    return ", ".join(parts) or "<none>"


def _pdb_min(p: policy_pb2.PodDisruptionBudget) -> str:
    return _int_or_string(p.spec.min_available, p.spec.HasField("min_available"))


def _pdb_max(p: policy_pb2.PodDisruptionBudget) -> str:
    return _int_or_string(p.spec.max_unavailable, p.spec.HasField("max_unavailable"))


_ACCESS = {"ReadWriteOnce": "RWO", "ReadOnlyMany": "ROX", "ReadWriteMany": "RWX", "ReadWriteOncePod": "RWOP"}


def _modes(modes: Any) -> str:
    return ",".join(_ACCESS.get(m, m) for m in modes)


def _claim_of(pv: core_pb2.PersistentVolume) -> str:
    ref = pv.spec.claim_ref
    return f"{ref.namespace}/{ref.name}" if ref.name else ""


def _owner(o: Any) -> str:
    ref = next((r for r in meta(o).owner_references if r.controller), None)
    if ref is None:
        return "<none>"
    group = ref.api_version.split("/")[0] if "/" in ref.api_version else ""
    return f"{ref.kind.lower()}.{group}/{ref.name}" if group else f"{ref.kind.lower()}/{ref.name}"


COLUMNS: dict[str, tuple[list[Column], list[Column]]] = {
    "Pod": (
        [("READY", _pod_ready), ("STATUS", _pod_status), ("RESTARTS", _pod_restarts), ("AGE", _age)],
        [
            ("IP", lambda p: p.status.pod_ip or "<none>"),
            ("NODE", lambda p: p.spec.node_name or "<none>"),
            ("PORTS", _pod_ports),
        ],
    ),
    "Deployment": (
        [
            ("READY", lambda d: f"{d.status.ready_replicas}/{d.spec.replicas}"),
            ("UP-TO-DATE", lambda d: str(d.status.updated_replicas)),
            ("AVAILABLE", lambda d: str(d.status.available_replicas)),
            ("AGE", _age),
        ],
        [("SELECTOR", lambda d: _selector(d.spec.selector))],
    ),
    "ReplicaSet": (
        [
            ("DESIRED", lambda r: str(r.spec.replicas)),
            ("CURRENT", lambda r: str(r.status.replicas)),
            ("READY", lambda r: str(r.status.ready_replicas)),
            ("AGE", _age),
        ],
        [("SELECTOR", lambda r: _selector(r.spec.selector))],
    ),
    "DaemonSet": (
        [
            ("DESIRED", lambda d: str(d.status.desired_number_scheduled)),
            ("CURRENT", lambda d: str(d.status.current_number_scheduled)),
            ("READY", lambda d: str(d.status.number_ready)),
            ("UP-TO-DATE", lambda d: str(d.status.updated_number_scheduled)),
            ("AVAILABLE", lambda d: str(d.status.number_available)),
            (
                "NODE SELECTOR",
                lambda d: ",".join(f"{k}={v}" for k, v in d.spec.template.spec.node_selector.items()) or "<none>",
            ),
            ("AGE", _age),
        ],
        [],
    ),
    "Job": (
        [
            ("STATUS", _job_status),
            (
                "COMPLETIONS",
                lambda j: f"{j.status.succeeded}/{j.spec.completions if j.spec.HasField('completions') else 1}",
            ),
            ("DURATION", _job_duration),
            ("AGE", _age),
        ],
        [],
    ),
    "CronJob": (
        [
            ("SCHEDULE", lambda c: c.spec.schedule),
            ("TIMEZONE", lambda c: c.spec.time_zone if c.spec.HasField("time_zone") else "<none>"),
            ("SUSPEND", lambda c: "True" if c.spec.suspend else "False"),
            ("ACTIVE", lambda c: str(len(c.status.active))),
            ("LAST SCHEDULE", _cronjob_last_schedule),
            ("AGE", _age),
        ],
        [
            ("CONTAINERS", lambda c: _containers(c.spec.job_template.spec.template.spec)),
            ("IMAGES", lambda c: _images(c.spec.job_template.spec.template.spec)),
            ("SELECTOR", lambda c: _selector(c.spec.job_template.spec.selector)),
        ],
    ),
    "HorizontalPodAutoscaler": (
        [
            ("REFERENCE", lambda h: f"{h.spec.scale_target_ref.kind}/{h.spec.scale_target_ref.name}"),
            ("TARGETS", _hpa_targets),
            ("MINPODS", lambda h: str(h.spec.min_replicas if h.spec.HasField("min_replicas") else 1)),
            ("MAXPODS", lambda h: str(h.spec.max_replicas)),
            ("REPLICAS", lambda h: str(h.status.current_replicas)),
            ("AGE", _age),
        ],
        [],
    ),
    "PodDisruptionBudget": (
        [
            ("MIN AVAILABLE", _pdb_min),
            ("MAX UNAVAILABLE", _pdb_max),
            ("ALLOWED DISRUPTIONS", lambda p: str(p.status.disruptions_allowed)),
            ("AGE", _age),
        ],
        [],
    ),
    "StatefulSet": (
        [("READY", lambda s: f"{s.status.ready_replicas}/{s.spec.replicas}"), ("AGE", _age)],
        [
            ("CONTAINERS", lambda s: _containers(s.spec.template.spec)),
            ("IMAGES", lambda s: _images(s.spec.template.spec)),
        ],
    ),
    "ControllerRevision": (
        [("CONTROLLER", _owner), ("REVISION", lambda r: str(r.revision)), ("AGE", _age)],
        [],
    ),
    "PersistentVolumeClaim": (
        [
            ("STATUS", lambda c: c.status.phase or "Pending"),
            ("VOLUME", lambda c: c.spec.volume_name),
            ("CAPACITY", lambda c: c.status.capacity.get("storage", "")),
            ("ACCESS MODES", lambda c: _modes(c.status.access_modes)),
            (
                "STORAGECLASS",
                lambda c: c.spec.storage_class_name if c.spec.HasField("storage_class_name") else "<unset>",
            ),
            ("AGE", _age),
        ],
        [("VOLUMEMODE", lambda c: c.spec.volume_mode or "Filesystem")],
    ),
    "PersistentVolume": (
        [
            ("CAPACITY", lambda v: v.spec.capacity.get("storage", "")),
            ("ACCESS MODES", lambda v: _modes(v.spec.access_modes)),
            ("RECLAIM POLICY", lambda v: v.spec.persistent_volume_reclaim_policy),
            ("STATUS", lambda v: v.status.phase or "Pending"),
            ("CLAIM", _claim_of),
            ("STORAGECLASS", lambda v: v.spec.storage_class_name),
            ("REASON", lambda v: v.status.reason),
            ("AGE", _age),
        ],
        [("VOLUMEMODE", lambda v: v.spec.volume_mode or "Filesystem")],
    ),
    "PriorityClass": (
        [
            ("VALUE", lambda c: str(c.value)),
            ("GLOBAL-DEFAULT", lambda c: "true" if c.global_default else "false"),
            ("AGE", _age),
        ],
        [("PREEMPTIONPOLICY", lambda c: c.preemption_policy or "PreemptLowerPriority")],
    ),
    "Service": (
        [
            ("TYPE", lambda s: s.spec.type or "ClusterIP"),
            ("CLUSTER-IP", lambda s: s.spec.cluster_ip or "<pending>"),
            ("EXTERNAL-IP", lambda s: ",".join(s.spec.external_ips) or "<none>"),
            ("PORT(S)", _svc_ports),
            ("AGE", _age),
        ],
        [("SELECTOR", lambda s: ",".join(f"{k}={v}" for k, v in sorted(s.spec.selector.items())) or "<none>")],
    ),
    "Endpoints": ([("ENDPOINTS", _endpoints), ("AGE", _age)], []),
    "Node": (
        [
            ("STATUS", _node_status),
            ("ROLES", _node_roles),
            ("AGE", _age),
            ("VERSION", lambda n: n.status.node_info.agent_version or "<none>"),
        ],
        [
            ("INTERNAL-IP", _node_ip),
            ("OS-IMAGE", lambda n: n.status.node_info.os_image or "<unknown>"),
            ("KERNEL-VERSION", lambda n: n.status.node_info.kernel_version or "<unknown>"),
        ],
    ),
    "Namespace": ([("STATUS", lambda n: n.status.phase or "Active"), ("AGE", _age)], []),
    "ConfigMap": ([("DATA", lambda c: str(len(c.data) + len(c.binary_data))), ("AGE", _age)], []),
    "Secret": ([("TYPE", lambda s: s.type), ("DATA", lambda s: str(len(s.data))), ("AGE", _age)], []),
    "Lease": ([("HOLDER", lambda lease: lease.spec.holder_identity or "<none>"), ("AGE", _age)], []),
}


def _event_row(e: core_pb2.Event) -> list[str]:
    last = e.last_timestamp if e.last_timestamp.seconds else meta(e).creation_timestamp
    obj = f"{e.involved_object.kind.lower()}/{e.involved_object.name}"
    count = f" (x{e.count})" if e.count > 1 else ""
    return [age(last), e.type, e.reason, obj, e.message + count]


def table(
    objects: Sequence[Message],
    kind: kinds.KindInfo,
    *,
    wide: bool = False,
    all_namespaces: bool = False,
    show_labels: bool = False,
    headers: bool = True,
    extra_columns: Sequence[Column] = (),
    qualified_names: bool = False,
) -> str:
    """The kubectl-style table of objects of one kind (``extra_columns`` from data beside the objects;
    ``qualified_names`` prints ``deployment.apps/web`` as ``get all`` does)."""
    if kind.kind == "Event":
        head = ["LAST SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"]
        rows = [_event_row(e) for e in objects]  # type: ignore[arg-type]
    else:
        base, extra = COLUMNS.get(kind.kind, ([("AGE", _age)], []))
        cols = base[:-1] + list(extra_columns) + base[-1:] + (extra if wide else [])
        head = ["NAME", *(c[0] for c in cols)]
        rows = [[name(o) if qualified_names else meta(o).name, *(fn(o) for _, fn in cols)] for o in objects]
    if all_namespaces and kind.namespaced:
        head = ["NAMESPACE", *head]
        rows = [[meta(o).namespace, *r] for o, r in zip(objects, rows, strict=True)]
    if show_labels:
        head = [*head, "LABELS"]
        rows = [
            [*r, ",".join(f"{k}={v}" for k, v in sorted(meta(o).labels.items())) or "<none>"]
            for o, r in zip(objects, rows, strict=True)
        ]
    text = tabulate(rows, headers=head if headers else (), tablefmt=_KUBECTL, disable_numparse=True)
    return "\n".join(line.rstrip() for line in text.splitlines())


def to_yaml(objects: Sequence[Message], *, as_list: bool) -> str:
    """YAML of one object, or a v1 List of several."""
    if not as_list and len(objects) == 1:
        return yaml.safe_dump(typed_manifest(objects[0]), sort_keys=False)
    return yaml.safe_dump(
        {"apiVersion": "v1", "kind": "List", "items": [typed_manifest(o) for o in objects]}, sort_keys=False
    )


def to_json(objects: Sequence[Message], *, as_list: bool) -> str:
    """JSON of one object, or a v1 List of several."""
    if not as_list and len(objects) == 1:
        return json.dumps(typed_manifest(objects[0]), indent=4)
    return json.dumps({"apiVersion": "v1", "kind": "List", "items": [typed_manifest(o) for o in objects]}, indent=4)


def name(obj: Message) -> str:
    """``kind.group/name`` as ``-o name`` prints it (e.g. ``deployment.apps/web``)."""
    info = kinds.of_message(obj)
    group = info.group.split("/")[0] if info.group else ""
    return f"{info.kind.lower()}{'.' + group if group else ''}/{meta(obj).name}"


MAX_JSONPATH_TEMPLATE = 4096
_TEMPLATE = re.compile(r"\{([^{}]*)\}")


def jsonpath(template: str, objects: Sequence[Message], *, as_list: bool) -> str:
    """kubectl's ``-o jsonpath=...``: ``{.path}`` expressions inside literal text (``{range}`` excepted);
    templates longer than ``MAX_JSONPATH_TEMPLATE`` characters are refused before parsing."""
    if len(template) > MAX_JSONPATH_TEMPLATE:
        raise InvalidError(f"jsonpath: the template is longer than {MAX_JSONPATH_TEMPLATE} characters")
    data: Any
    if not as_list and len(objects) == 1:
        data = typed_manifest(objects[0])
    else:
        data = {"apiVersion": "v1", "kind": "List", "items": [typed_manifest(o) for o in objects]}
    out: list[str] = []
    pos = 0
    for match in _TEMPLATE.finditer(template):
        out.append(template[pos : match.start()].replace("\\n", "\n").replace("\\t", "\t"))
        expr = match.group(1).strip()
        if expr.startswith(("range", "end")):
            raise InvalidError(
                "jsonpath: {range} is not supported; use -o json or a path such as {.items[*].metadata.name}"
            )
        path = "$" + (expr if expr.startswith((".", "[")) else "." + expr) if expr not in ("", "$", ".") else "$"
        try:
            found = [m.value for m in jsonpath_parse(path).find(data)]
        except (JsonPathParserError, Exception) as err:  # the parser raises plain Exceptions too
            raise InvalidError(f"jsonpath: cannot parse {{{expr}}}: {err}") from None
        out.append(" ".join(v if isinstance(v, str) else json.dumps(v) for v in found))
        pos = match.end()
    out.append(template[pos:].replace("\\n", "\n").replace("\\t", "\t"))
    return "".join(out)
