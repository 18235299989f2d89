"""``navarch describe``: a human summary of an object in kubectl's layout, one describer per kind.

Every describer starts with the object's identity (``Name:``, ``Namespace:``, ``Labels:``, ``Annotations:``),
then what matters for its kind (a Pod's containers and their states, a Deployment's replica counts and
strategy, a Node's conditions and capacity, ...), conditions as a table; the command appends ``Events:``
last. Kinds without a describer of their own get the generic one, which prints their fields as labelled
lines, never a YAML dump. Describers only format: the command fetches events and related objects.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp

from cli.printers import age
from controlplane.api import kinds
from controlplane.api.objects import meta, to_manifest
from controlplane.api.pb import apps_pb2, autoscaling_pb2, batch_pb2, core_pb2, meta_pb2, policy_pb2
from controlplane.api.selectors import selector_text

LAST_APPLIED = "navarch.io/last-applied-configuration"
WIDTH = 14  # kubectl aligns values after the labels with a tab writer; a fixed column reads the same


def field(label: str, value: object, indent: int = 0) -> str:
    """``Label:  value`` with values aligned."""
    text = "<none>" if value in (None, "") else str(value)
    head = " " * indent + f"{label}:"
    pad = head.ljust(WIDTH + indent) if len(head) < WIDTH + indent else head + "  "
    return f"{pad}{text}".rstrip()


def _mapping(label: str, values: dict[str, str], indent: int = 0, sep: str = "=") -> list[str]:
    if not values:
        return [field(label, "<none>", indent)]
    items = [f"{k}{sep}{v}" for k, v in sorted(values.items())]
    pad = " " * (WIDTH + indent)
    return [field(label, items[0], indent), *(pad + item for item in items[1:])]


def _list(label: str, values: Sequence[str], indent: int = 0) -> list[str]:
    if not values:
        return [field(label, "<none>", indent)]
    pad = " " * (WIDTH + indent)
    return [field(label, values[0], indent), *(pad + v for v in values[1:])]


def timestamp(ts: Timestamp) -> str:
    """RFC 1123-ish as kubectl prints times (``Mon, 01 Dec 2026 07:35:54 +0000``)."""
    if not ts.seconds:
        return "<unset>"
    return ts.ToDatetime().strftime("%a, %d %b %Y %H:%M:%S +0000")


def table(headers: Sequence[str], rows: Iterable[Sequence[str]], indent: int = 2) -> list[str]:
    """A small aligned table (conditions, ports), as kubectl prints them inside describe."""
    body = [list(map(str, r)) for r in rows]
    widths = [max(len(h), *(len(r[i]) for r in body)) if body else len(h) for i, h in enumerate(headers)]
    underline = ["-" * len(h) for h in headers]
    out = []
    for row in [list(headers), underline, *body]:
        out.append((" " * indent + "   ".join(c.ljust(w) for c, w in zip(row, widths, strict=True))).rstrip())
    return out


def identity(obj: Message) -> list[str]:
    """Name, Namespace, Labels, Annotations (without apply's bookkeeping), creation and ownership."""
    m = meta(obj)
    info = kinds.of_message(obj)
    lines = [field("Name", m.name)]
    if info.namespaced:
        lines.append(field("Namespace", m.namespace))
    lines += _mapping("Labels", dict(m.labels))
    lines += _mapping("Annotations", {k: v for k, v in m.annotations.items() if k != LAST_APPLIED}, sep=": ")
    if m.creation_timestamp.seconds:
        lines.append(field("CreationTimestamp", timestamp(m.creation_timestamp)))
    if m.HasField("deletion_timestamp"):
        lines.append(field("Terminating", f"since {timestamp(m.deletion_timestamp)}"))
    for ref in m.owner_references:
        lines.append(field("Controlled By", f"{ref.kind}/{ref.name}"))
    if m.finalizers:
        lines.append(field("Finalizers", "[" + " ".join(m.finalizers) + "]"))
    return lines


def conditions(items: Sequence[meta_pb2.Condition], *, detailed: bool = False) -> list[str]:
    """``Conditions:`` as a table (Type, Status, Reason; with times and messages for nodes)."""
    if not items:
        return [field("Conditions", "<none>")]
    if detailed:
        rows = [
            (c.type, c.status, timestamp(c.last_probe_time), timestamp(c.last_transition_time), c.reason, c.message)
            for c in items
        ]
        head = ("Type", "Status", "LastHeartbeatTime", "LastTransitionTime", "Reason", "Message")
        return ["Conditions:", *table(head, rows)]
    return ["Conditions:", *table(("Type", "Status", "Reason"), [(c.type, c.status, c.reason) for c in items])]


def selector(sel: meta_pb2.LabelSelector) -> str:
    """``app=web,tier in (a,b)``."""
    return selector_text(sel) or "<none>"


def _state(label: str, state: core_pb2.ContainerState, indent: int) -> list[str]:
    if state.HasField("running"):
        return [field(label, "Running", indent), field("Started", timestamp(state.running.started_at), indent + 2)]
    if state.HasField("waiting"):
        out = [field(label, "Waiting", indent), field("Reason", state.waiting.reason, indent + 2)]
        if state.waiting.message:
            out.append(field("Message", state.waiting.message, indent + 2))
        return out
    if state.HasField("terminated"):
        t = state.terminated
        out = [field(label, "Terminated", indent), field("Reason", t.reason, indent + 2)]
        if t.message:
            out.append(field("Message", t.message, indent + 2))
        out.append(field("Exit Code", t.exit_code, indent + 2))
        if t.signal:
            out.append(field("Signal", t.signal, indent + 2))
        out += [
            field("Started", timestamp(t.started_at), indent + 2),
            field("Finished", timestamp(t.finished_at), indent + 2),
        ]
        return out
    return [field(label, "Waiting" if label == "State" else "<none>", indent)]


def _probe(p: core_pb2.Probe) -> str:
    if p.HasField("exec"):
        how = f"exec [{' '.join(p.exec.command)}]"
    elif p.HasField("http_get"):
        port = p.http_get.port.string_value or int(p.http_get.port.number_value)
        how = f"http-get {(p.http_get.scheme or 'HTTP').lower()}://{p.http_get.host}:{port}{p.http_get.path or '/'}"
    elif p.HasField("tcp_socket"):
        port = p.tcp_socket.port.string_value or int(p.tcp_socket.port.number_value)
        how = f"tcp-socket {p.tcp_socket.host}:{port}"
    else:
        how = "<unknown>"
    return (
        f"{how} delay={p.initial_delay_seconds}s timeout={p.timeout_seconds or 1}s period={p.period_seconds or 10}s "
        f"#success={p.success_threshold or 1} #failure={p.failure_threshold or 3}"
    )


def _env_value(e: core_pb2.EnvVar) -> str:
    if not e.HasField("value_from"):
        return e.value
    src = e.value_from
    if src.HasField("config_map_key_ref"):
        return f"<set to the key '{src.config_map_key_ref.key}' of config map '{src.config_map_key_ref.name}'>"
    if src.HasField("secret_key_ref"):
        return f"<set to the key '{src.secret_key_ref.key}' in secret '{src.secret_key_ref.name}'>"
    if src.HasField("field_ref"):
        return f"({src.field_ref.api_version or 'v1'}:{src.field_ref.field_path})"
    return "<set from another source>"


def _container(c: core_pb2.Container, status: core_pb2.ContainerStatus | None, indent: int) -> list[str]:
    i2 = indent + 2
    lines = [" " * indent + f"{c.name}:"]
    if status is not None and status.container_id:
        lines.append(field("Container ID", status.container_id, i2))
    if c.command:
        lines += [" " * i2 + "Command:", *(" " * (i2 + 2) + part for part in c.command)]
    if c.args:
        lines += [" " * i2 + "Args:", *(" " * (i2 + 2) + part for part in c.args)]
    if c.working_dir:
        lines.append(field("Working Dir", c.working_dir, i2))
    allocated = {a.name: a.container_port for a in status.allocated_ports} if status is not None else {}
    ports = [
        f"{p.container_port or allocated.get(p.name) or '<allocated by the node>'}/{p.protocol or 'TCP'}"
        + (f" ({p.name}, allocated)" if not p.container_port and p.name in allocated else "")
        for p in c.ports
    ]
    lines.append(field("Port" + ("s" if len(ports) > 1 else ""), ", ".join(ports) or "<none>", i2))
    host_ports = [f"{p.host_port}/{p.protocol or 'TCP'}" for p in c.ports if p.host_port]
    lines.append(field("Host Port", ", ".join(host_ports) or "<none>", i2))
    if status is not None:
        lines += _state("State", status.state, i2)
        if status.last_state.ListFields():
            lines += _state("Last State", status.last_state, i2)
        lines.append(field("Ready", str(status.ready), i2))
        lines.append(field("Restart Count", status.restart_count, i2))
    if c.resources.limits:
        lines += [" " * i2 + "Limits:", *(field(k, v, i2 + 2) for k, v in sorted(c.resources.limits.items()))]
    if c.resources.requests:
        lines += [" " * i2 + "Requests:", *(field(k, v, i2 + 2) for k, v in sorted(c.resources.requests.items()))]
    for label, probe in (
        ("Liveness", c.liveness_probe),
        ("Readiness", c.readiness_probe),
        ("Startup", c.startup_probe),
    ):
        if probe.ListFields():
            lines.append(field(label, _probe(probe), i2))
    if c.env:
        lines += [" " * i2 + "Environment:", *(field(e.name, _env_value(e), i2 + 2) for e in c.env)]
    else:
        lines.append(field("Environment", "<none>", i2))
    mounts = [f"{m.mount_path} from {m.name} ({'ro' if m.read_only else 'rw'})" for m in c.volume_mounts]
    lines += _list("Mounts", mounts, i2)
    return lines


def _volume(v: core_pb2.Volume) -> list[str]:
    lines = [f"  {v.name}:"]
    if v.HasField("config_map"):
        lines += [
            field("Type", "ConfigMap (a volume populated by a ConfigMap)", 4),
            field("Name", v.config_map.name, 4),
        ]
    elif v.HasField("secret"):
        lines += [
            field("Type", "Secret (a volume populated by a Secret)", 4),
            field("SecretName", v.secret.secret_name, 4),
        ]
    elif v.HasField("host_path"):
        lines += [field("Type", "HostPath (bare host directory volume)", 4), field("Path", v.host_path.path, 4)]
    elif v.HasField("empty_dir"):
        lines += [
            field("Type", "EmptyDir (a temporary directory that shares a pod's lifetime)", 4),
            field("Medium", v.empty_dir.medium, 4),
            field("SizeLimit", v.empty_dir.size_limit or "<unset>", 4),
        ]
    return lines


def pod_template(
    spec: core_pb2.PodSpec,
    labels: dict[str, str],
    *,
    statuses: Sequence[core_pb2.ContainerStatus] = (),
    init_statuses: Sequence[core_pb2.ContainerStatus] = (),
    indent: int = 0,
    pod: bool = False,
) -> list[str]:
    """Containers (with their states for a ``pod``), volumes, node selectors and tolerations."""
    lines: list[str] = []
    if not pod:
        lines += _mapping("Labels", labels, indent)
    by_name = {s.name: s for s in statuses}
    init_by_name = {s.name: s for s in init_statuses}

    def status_of(table: dict[str, core_pb2.ContainerStatus], name: str) -> core_pb2.ContainerStatus | None:
        return table.get(name, core_pb2.ContainerStatus(name=name)) if pod else None

    if spec.init_containers:
        lines.append(" " * indent + "Init Containers:")
        for c in spec.init_containers:
            lines += _container(c, status_of(init_by_name, c.name), indent + 2)
    lines.append(" " * indent + "Containers:")
    for c in spec.containers:
        lines += _container(c, status_of(by_name, c.name), indent + 2)
    if spec.volumes:
        lines.append(" " * indent + "Volumes:")
        lines += [" " * indent + line for v in spec.volumes for line in _volume(v)]
    else:
        lines.append(field("Volumes", "<none>", indent))
    if pod:
        lines += _mapping("Node-Selectors", dict(spec.node_selector))
        lines += _list(
            "Tolerations",
            [
                f"{t.key or '<all>'}{('=' + t.value) if t.value else ''}:{t.effect or '<all>'}"
                + (f" op={t.operator}" if t.operator and t.operator != "Equal" else "")
                + (f" for {t.toleration_seconds}s" if t.HasField("toleration_seconds") else "")
                for t in spec.tolerations
            ],
        )
    return lines


def describe_pod(p: core_pb2.Pod) -> list[str]:
    status = "Terminating" if meta(p).HasField("deletion_timestamp") else p.status.phase or "Pending"
    lines = identity(p)[:2]
    lines += [field("Priority", p.spec.priority)]
    if p.spec.service_account_name:
        lines.append(field("Service Account", p.spec.service_account_name))
    node = p.spec.node_name + (f"/{p.status.host_ip}" if p.status.host_ip else "") if p.spec.node_name else "<none>"
    lines += [field("Node", node), field("Start Time", timestamp(p.status.start_time))]
    lines += identity(p)[2:]
    lines.append(field("Status", status))
    if p.status.reason:
        lines.append(field("Reason", p.status.reason))
    if p.status.message:
        lines.append(field("Message", p.status.message))
    lines.append(field("IP", p.status.pod_ip))
    lines += pod_template(
        p.spec, {}, statuses=p.status.container_statuses, init_statuses=p.status.init_container_statuses, pod=True
    )
    lines += conditions(p.status.conditions)
    if p.status.qos_class:
        lines.append(field("QoS Class", p.status.qos_class))
    return lines


def _template(t: core_pb2.PodTemplateSpec) -> list[str]:
    return ["Pod Template:", *pod_template(t.spec, dict(t.metadata.labels), indent=2)]


def _int_or_percent(v: Any) -> str:
    if v is None or not v.ListFields():
        return "25%"
    return v.string_value or str(int(v.number_value))


def describe_deployment(d: apps_pb2.Deployment) -> list[str]:
    s = d.status
    lines = identity(d)
    lines += [
        field("Selector", selector(d.spec.selector)),
        field(
            "Replicas",
            f"{d.spec.replicas} desired | {s.updated_replicas} updated | {s.replicas} total | "
            f"{s.available_replicas} available | {s.unavailable_replicas} unavailable",
        ),
        field("StrategyType", d.spec.strategy.type or "RollingUpdate"),
        field("MinReadySeconds", d.spec.min_ready_seconds),
    ]
    if (d.spec.strategy.type or "RollingUpdate") == "RollingUpdate":
        ru = d.spec.strategy.rolling_update
        lines.append(
            field(
                "RollingUpdateStrategy",
                f"{_int_or_percent(ru.max_unavailable if ru.HasField('max_unavailable') else None)} max unavailable, "
                f"{_int_or_percent(ru.max_surge if ru.HasField('max_surge') else None)} max surge",
            )
        )
    if d.spec.paused:
        lines.append(field("Paused", "true"))
    return [*lines, *_template(d.spec.template), *conditions(s.conditions)]


def describe_replicaset(r: apps_pb2.ReplicaSet) -> list[str]:
    lines = identity(r)
    lines += [
        field("Selector", selector(r.spec.selector)),
        field("Replicas", f"{r.status.replicas} current / {r.spec.replicas} desired"),
        field("Pods Status", f"{r.status.ready_replicas} Ready / {r.status.available_replicas} Available"),
    ]
    return [*lines, *_template(r.spec.template), *conditions(r.status.conditions)]


def describe_daemonset(d: apps_pb2.DaemonSet) -> list[str]:
    s = d.status
    lines = identity(d)
    lines += [
        field("Selector", selector(d.spec.selector)),
        *(_mapping("Node-Selector", dict(d.spec.template.spec.node_selector))),
        field("Desired Number of Nodes Scheduled", s.desired_number_scheduled),
        field("Current Number of Nodes Scheduled", s.current_number_scheduled),
        field("Number of Nodes Scheduled with Up-to-date Pods", s.updated_number_scheduled),
        field("Number of Nodes Scheduled with Available Pods", s.number_available),
        field("Number of Nodes Misscheduled", s.number_misscheduled),
        field("Pods Status", f"{s.number_ready} Ready / {s.number_unavailable} Unavailable"),
    ]
    return [*lines, *_template(d.spec.template), *conditions(s.conditions)]


def describe_job(j: batch_pb2.Job) -> list[str]:
    s = j.status
    lines = identity(j)
    lines += [
        field("Selector", selector(j.spec.selector)),
        field("Parallelism", j.spec.parallelism if j.spec.HasField("parallelism") else 1),
        field("Completions", j.spec.completions if j.spec.HasField("completions") else "<unset>"),
        field("Backoff Limit", j.spec.backoff_limit if j.spec.HasField("backoff_limit") else 6),
        field("Start Time", timestamp(s.start_time)),
    ]
    if s.completion_time.seconds:
        lines.append(field("Completed At", timestamp(s.completion_time)))
        lines.append(field("Duration", age(s.start_time, s.completion_time.ToDatetime().astimezone())))
    lines.append(field("Pods Statuses", f"{s.active} Active / {s.succeeded} Succeeded / {s.failed} Failed"))
    return [*lines, *_template(j.spec.template), *conditions(s.conditions)]


def describe_cronjob(c: batch_pb2.CronJob) -> list[str]:
    spec, s = c.spec, c.status
    job = spec.job_template.spec
    lines = identity(c)
    lines += [
        field("Schedule", spec.schedule),
        field("Time Zone", spec.time_zone if spec.HasField("time_zone") else "<unset>"),
        field("Concurrency Policy", spec.concurrency_policy or "Allow"),
        field("Suspend", "True" if spec.suspend else "False"),
        field("Successful Job History Limit", spec.successful_jobs_history_limit),
        field("Failed Job History Limit", spec.failed_jobs_history_limit),
        field(
            "Starting Deadline Seconds",
            f"{spec.starting_deadline_seconds}s" if spec.HasField("starting_deadline_seconds") else "<unset>",
        ),
        field("Parallelism", job.parallelism if job.HasField("parallelism") else "<unset>"),
        field("Completions", job.completions if job.HasField("completions") else "<unset>"),
        field("Last Schedule Time", timestamp(s.last_schedule_time) if s.last_schedule_time.seconds else "<unset>"),
        field(
            "Last Successful Time", timestamp(s.last_successful_time) if s.last_successful_time.seconds else "<unset>"
        ),
        field("Active Jobs", ", ".join(r.name for r in s.active) or "<none>"),
    ]
    return [*lines, *_template(job.template)]


def describe_pdb(p: policy_pb2.PodDisruptionBudget) -> list[str]:
    def value(v: Any) -> str:
        return v.string_value if v.WhichOneof("kind") == "string_value" else str(int(v.number_value))

    s = p.status
    lines = identity(p)
    if p.spec.HasField("min_available"):
        lines.append(field("Min available", value(p.spec.min_available)))
    if p.spec.HasField("max_unavailable"):
        lines.append(field("Max unavailable", value(p.spec.max_unavailable)))
    lines += [
        field("Selector", selector(p.spec.selector)),
        field("Unhealthy Pod Eviction Policy", p.spec.unhealthy_pod_eviction_policy or "IfHealthyBudget"),
        "Status:",
        field("Allowed disruptions", s.disruptions_allowed, 2),
        field("Current", s.current_healthy, 2),
        field("Desired", s.desired_healthy, 2),
        field("Total", s.expected_pods, 2),
    ]
    return [*lines, *conditions(s.conditions)]


def describe_hpa(h: autoscaling_pb2.HorizontalPodAutoscaler) -> list[str]:
    ref = h.spec.scale_target_ref
    lines = identity(h)
    lines.append(field("Reference", f"{ref.kind}/{ref.name}"))
    lines.append("Metrics:                                               ( current / target )")
    current = {m.resource.name: m.resource.current for m in h.status.current_metrics}
    for m in h.spec.metrics:
        name, target, seen = m.resource.name, m.resource.target, current.get(m.resource.name)
        if target.type == "Utilization":
            now = f"{seen.average_utilization}% ({seen.average_value})" if seen is not None else "<unknown>"
            lines.append(
                f"  resource {name} on pods  (as a percentage of request):  {now} / {target.average_utilization}%"
            )
        else:
            now = seen.average_value if seen is not None else "<unknown>"
            lines.append(f"  resource {name} on pods:  {now} / {target.average_value}")
    lines += [
        field("Min replicas", h.spec.min_replicas if h.spec.HasField("min_replicas") else 1),
        field("Max replicas", h.spec.max_replicas),
        field(f"{ref.kind} pods", f"{h.status.current_replicas} current / {h.status.desired_replicas} desired"),
    ]
    return [*lines, *conditions(h.status.conditions)]


def describe_statefulset(sts: apps_pb2.StatefulSet) -> list[str]:
    spec, s = sts.spec, sts.status
    lines = identity(sts)
    strategy = spec.update_strategy
    lines += [
        field("Selector", selector(spec.selector)),
        field("Replicas", f"{spec.replicas} desired | {s.replicas} total"),
        field("Update Strategy", strategy.type or "RollingUpdate"),
    ]
    if (strategy.type or "RollingUpdate") == "RollingUpdate":
        lines.append(field("Partition", strategy.rolling_update.partition, 2))
    lines += [
        field("Pod Management Policy", spec.pod_management_policy or "OrderedReady"),
        field("Service Name", spec.service_name or "<none>"),
        field("Pods Status", f"{s.ready_replicas} Running / {s.replicas - s.ready_replicas} Waiting"),
        field("Current Revision", s.current_revision or "<none>"),
        field("Update Revision", s.update_revision or "<none>"),
        *_template(spec.template),
        "Volume Claims:" if spec.volume_claim_templates else field("Volume Claims", "<none>"),
    ]
    for claim in spec.volume_claim_templates:
        klass = claim.spec.storage_class_name if claim.spec.HasField("storage_class_name") else "<unset>"
        lines += [
            field("Name", claim.metadata.name, 2),
            field("StorageClass", klass, 2),
            field("Capacity", claim.spec.resources.requests.get("storage", ""), 2),
            field("Access Modes", ",".join(claim.spec.access_modes), 2),
        ]
    policy = spec.persistent_volume_claim_retention_policy
    lines.append(field("Claim Retention", f"whenDeleted={policy.when_deleted}, whenScaled={policy.when_scaled}"))
    return lines


def describe_claim(pvc: core_pb2.PersistentVolumeClaim) -> list[str]:
    lines = identity(pvc)
    klass = pvc.spec.storage_class_name if pvc.spec.HasField("storage_class_name") else "<unset>"
    return [
        *lines,
        field("StorageClass", klass),
        field("Status", pvc.status.phase or "Pending"),
        field("Volume", pvc.spec.volume_name or "<none>"),
        field("Capacity", pvc.status.capacity.get("storage", "") or "<none>"),
        field("Requested", pvc.spec.resources.requests.get("storage", "")),
        field("Access Modes", ",".join(pvc.spec.access_modes)),
        field("VolumeMode", pvc.spec.volume_mode or "Filesystem"),
    ]


def describe_volume(pv: core_pb2.PersistentVolume) -> list[str]:
    ref = pv.spec.claim_ref
    nodes = [v for t in pv.spec.node_affinity.required.node_selector_terms for f in t.match_fields for v in f.values]
    return [
        *identity(pv),
        field("StorageClass", pv.spec.storage_class_name or "<none>"),
        field("Status", pv.status.phase or "Pending"),
        field("Claim", f"{ref.namespace}/{ref.name}" if ref.name else "<none>"),
        field("Reclaim Policy", pv.spec.persistent_volume_reclaim_policy),
        field("Access Modes", ",".join(pv.spec.access_modes)),
        field("Capacity", pv.spec.capacity.get("storage", "")),
        field("Node Affinity", ",".join(nodes) or "<none>"),
        field("Source", f"local directory {pv.spec.local.path} under the node agent's local-volumes"),
    ]


def describe_service(svc: core_pb2.Service) -> list[str]:
    lines = identity(svc)
    lines += _mapping("Selector", dict(svc.spec.selector))
    lines += [field("Type", svc.spec.type or "ClusterIP"), field("IP", svc.spec.cluster_ip or "<pending>")]
    if svc.spec.external_ips:
        lines.append(field("External IPs", ",".join(svc.spec.external_ips)))
    for p in svc.spec.ports:
        name = p.name or "<unset>"
        lines.append(field("Port", f"{name}  {p.port}/{p.protocol or 'TCP'}"))
        target = p.target_port.string_value or (
            int(p.target_port.number_value) if p.HasField("target_port") else p.port
        )
        lines.append(field("TargetPort", f"{target}/{p.protocol or 'TCP'}"))
        if p.node_port:
            lines.append(field("NodePort", f"{name}  {p.node_port}/{p.protocol or 'TCP'}"))
    lines.append(field("Session Affinity", svc.spec.session_affinity or "None"))
    return lines


def describe_node(n: core_pb2.Node) -> list[str]:
    roles = sorted(k.split("/", 1)[1] for k in meta(n).labels if k.startswith("node-role.kubernetes.io/"))
    lines = [field("Name", meta(n).name), field("Roles", ",".join(roles) or "<none>"), *identity(n)[1:]]
    lines += _list("Taints", [f"{t.key}{('=' + t.value) if t.value else ''}:{t.effect}" for t in n.spec.taints])
    lines.append(field("Unschedulable", str(n.spec.unschedulable).lower()))
    lines += conditions(n.status.conditions, detailed=True)
    lines += ["Addresses:", *(field(a.type, a.address, 2) for a in n.status.addresses)]
    lines += ["Capacity:", *(field(k, v, 2) for k, v in sorted(n.status.capacity.items()))]
    lines += ["Allocatable:", *(field(k, v, 2) for k, v in sorted(n.status.allocatable.items()))]
    info = n.status.node_info
    lines += [
        "System Info:",
        field("Machine ID", info.machine_id, 2),
        field("Kernel Version", info.kernel_version, 2),
        field("OS Image", info.os_image, 2),
        field("Operating System", info.operating_system, 2),
        field("Architecture", info.architecture, 2),
        field("Agent Version", info.agent_version, 2),
    ]
    return lines


def describe_configmap(c: core_pb2.ConfigMap) -> list[str]:
    lines = [*identity(c), "", "Data", "===="]
    for k, v in sorted(c.data.items()):
        lines += [f"{k}:", "----", *v.splitlines(), ""]
    lines += ["", "BinaryData", "===="]
    lines += [f"{k}: {len(v)} bytes" for k, v in sorted(c.binary_data.items())]
    return lines


def describe_secret(s: core_pb2.Secret) -> list[str]:
    lines = [*identity(s), "", field("Type", s.type or "Opaque"), "", "Data", "===="]
    # Values are never printed, only their sizes (as kubectl).
    return lines + [f"{k}:  {len(v)} bytes" for k, v in sorted(s.data.items())]


def describe_namespace(ns: core_pb2.Namespace) -> list[str]:
    return [*identity(ns), field("Status", ns.status.phase or "Active")]


def _title(key: str) -> str:
    """``clusterIP`` -> ``Cluster IP``, ``holderIdentity`` -> ``Holder Identity``."""
    words = re.sub(r"([a-z0-9])([A-Z])", r"\1 \2", key)
    return words[:1].upper() + words[1:]


def _generic_value(label: str, value: Any, fd: FieldDescriptor | None, indent: int) -> list[str]:
    """One field, by its schema: maps as ``k=v`` lists, messages as nested labelled lines, lists item by item."""
    sub = fd.message_type if fd is not None else None
    if sub is not None and sub.GetOptions().map_entry:
        return _mapping(label, {k: str(v) for k, v in value.items()}, indent)
    if isinstance(value, list):
        if sub is None or sub.full_name.startswith("google.protobuf."):
            return _list(label, [str(v) for v in value], indent)
        out = [" " * indent + f"{label}:"]
        for n, item in enumerate(value):
            if n:
                out.append("")
            out += _generic_message(item, sub, indent + 2)
        return out
    if isinstance(value, dict) and sub is not None and not sub.full_name.startswith("google.protobuf."):
        return [" " * indent + f"{label}:", *_generic_message(value, sub, indent + 2)]
    return [field(label, value, indent)]


def _generic_message(doc: dict[str, Any], desc: Descriptor, indent: int) -> list[str]:
    fields = {f.json_name: f for f in desc.fields}
    out: list[str] = []
    for key, value in doc.items():
        out += _generic_value(_title(key), value, fields.get(key), indent)
    return out


def describe_generic(obj: Message) -> list[str]:
    """Identity, then every other top-level field as labelled lines (``Spec:`` ...), never YAML."""
    doc = to_manifest(obj)
    desc: Descriptor = obj.DESCRIPTOR  # type: ignore[assignment]
    fields = {f.json_name: f for f in desc.fields}
    lines = identity(obj)
    for key, value in doc.items():
        if key in ("apiVersion", "kind", "metadata"):
            continue
        lines += _generic_value(_title(key), value, fields.get(key), 0)
    return lines


DESCRIBERS: dict[str, Callable[[Any], list[str]]] = {
    "Pod": describe_pod,
    "Deployment": describe_deployment,
    "ReplicaSet": describe_replicaset,
    "DaemonSet": describe_daemonset,
    "Job": describe_job,
    "CronJob": describe_cronjob,
    "StatefulSet": describe_statefulset,
    "PersistentVolumeClaim": describe_claim,
    "PersistentVolume": describe_volume,
    "PodDisruptionBudget": describe_pdb,
    "HorizontalPodAutoscaler": describe_hpa,
    "Service": describe_service,
    "Node": describe_node,
    "ConfigMap": describe_configmap,
    "Secret": describe_secret,
    "Namespace": describe_namespace,
}


def describe(obj: Message) -> list[str]:
    """The kind's describer, or the generic one."""
    return DESCRIBERS.get(kinds.of_message(obj).kind, describe_generic)(obj)
