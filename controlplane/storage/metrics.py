"""etcd request metrics, named as kube-apiserver names them (``etcd_request_duration_seconds``)."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

REQUEST_DURATION = Histogram(
    "etcd_request_duration_seconds",
    "Latency of etcd requests made by the API server, retries included, by operation and resource type.",
    ["operation", "type"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 1.0, 1.5, 2.0, 4.0, 8.0, 15.0, 30.0, 60.0),
)
REQUEST_ERRORS = Counter(
    "etcd_request_errors_total",
    "etcd requests that failed after their retries, by operation and type.",
    ["operation", "type"],
)


def labels(what: str) -> tuple[str, str]:
    """Operation and resource type from a call's description: ``get /registry/pods/ns/x`` → (get, pods);
    ``update 3 pods`` → (update, pods); ``compact`` → (compact, "")."""
    words = what.split()
    if not words:
        return "", ""
    operation = words[0]
    rest = words[1:]
    if rest and rest[0].isdigit():
        rest = rest[1:]
    if not rest:
        return operation, ""
    target = rest[0]
    if target == "the" and len(rest) > 1:
        target = rest[1]
    if target.startswith("/registry/"):
        parts = target.split("/")
        return operation, parts[2] if len(parts) > 2 else ""
    return operation, target[:40]
