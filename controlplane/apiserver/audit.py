"""The audit log: one JSON line per request, written off the event loop, rotated by size.

Levels (``--audit-level``): ``None`` writes nothing; ``Metadata`` (default) writes who, what and the result;
``Request`` adds the request body; ``RequestResponse`` adds the response too. Bodies of Secrets are never
written, at any level, and neither are bearer tokens (a bootstrap token appears as its user,
``system:bootstrap:<id>``, which names the token without revealing it).
"""

from __future__ import annotations

import json
import logging
import logging.handlers
import queue
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

LEVELS = ("None", "Metadata", "Request", "RequestResponse")
SECRET_RESOURCES = ("secrets",)
"""Resources whose bodies never reach the audit log."""

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AuditConfig:
    """Where and how much to audit."""

    path: str
    """The log file ("-" for standard output)."""
    level: str = "Metadata"
    max_bytes: int = 100 * 1024 * 1024
    """Rotate when the file reaches this size."""
    backups: int = 10
    """Rotated files kept (``audit.log.1`` ...)."""
    queue_size: int = 100_000
    """Events waiting for the writer thread; beyond this (the disk is gone or far too slow) events are
    dropped and counted, never blocking requests."""


@dataclass
class AuditEvent:
    """What one request did."""

    user: str
    groups: tuple[str, ...]
    method: str
    verb: str = ""
    resource: str = ""
    subresource: str = ""
    namespace: str = ""
    name: str = ""
    source_ip: str = ""
    code: str = "OK"
    reason: str = ""
    latency_ms: float = 0.0
    authenticated_by: str = ""
    request: Any = None
    response: Any = None


class AuditLog:
    """Writes audit events as JSON lines; the file I/O runs on a thread owned by this object."""

    def __init__(self, config: AuditConfig) -> None:
        if config.level not in LEVELS:
            raise ValueError(f"audit level {config.level!r} is not one of {', '.join(LEVELS)}")
        self.config = config
        self.level = LEVELS.index(config.level)
        handler: logging.Handler
        if config.path == "-":
            handler = logging.StreamHandler()
        else:
            handler = logging.handlers.RotatingFileHandler(
                config.path, maxBytes=config.max_bytes, backupCount=config.backups, encoding="utf-8"
            )
        handler.setFormatter(logging.Formatter("%(message)s"))
        self._queue: queue.Queue[logging.LogRecord] = queue.Queue(maxsize=config.queue_size)
        self._listener = logging.handlers.QueueListener(self._queue, handler)
        self._handler = handler
        self.dropped = 0
        """Events dropped because the writer fell ``queue_size`` behind."""
        self._listener.start()

    @property
    def wants_request(self) -> bool:
        """Whether request bodies are recorded."""
        return self.level >= LEVELS.index("Request")

    @property
    def wants_response(self) -> bool:
        """Whether response bodies are recorded."""
        return self.level >= LEVELS.index("RequestResponse")

    def record(self, event: AuditEvent) -> None:
        """Queue one event for writing (never blocks the event loop)."""
        if self.level == 0:
            return
        entry: dict[str, Any] = {
            "time": datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z"),
            "auditID": str(uuid.uuid4()),
            "level": self.config.level,
            "user": {"username": event.user, "groups": list(event.groups)},
            "authenticatedBy": event.authenticated_by,
            "sourceIP": event.source_ip,
            "method": event.method,
            "verb": event.verb,
            "objectRef": {
                "resource": event.resource,
                "subresource": event.subresource,
                "namespace": event.namespace,
                "name": event.name,
            },
            "responseStatus": {"code": event.code, "reason": event.reason},
            "latencyMs": round(event.latency_ms, 3),
        }
        if event.resource not in SECRET_RESOURCES:
            if self.wants_request and event.request is not None:
                entry["requestObject"] = event.request
            if self.wants_response and event.response is not None:
                entry["responseObject"] = event.response
        line = json.dumps(entry, separators=(",", ":"), default=str)
        record = logging.LogRecord("navarch.audit", logging.INFO, __file__, 0, line, None, None)
        try:
            self._queue.put_nowait(record)
        except queue.Full:
            # Put directly, not through a QueueHandler: that one reports a full queue with a traceback on
            # stderr for every event, which on a busy server buries the one warning that matters.
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 10_000 == 0:
                log.warning(
                    "audit log %s: %d events dropped so far (the writer is %d events behind)",
                    self.config.path,
                    self.dropped,
                    self.config.queue_size,
                )

    def close(self) -> None:
        """Write what is queued and close the file."""
        self._listener.stop()
        self._handler.close()
