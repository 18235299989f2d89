"""The audit log writes one JSON line per event and rotates by size."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from controlplane.apiserver.audit import AuditConfig, AuditEvent, AuditLog


def test_the_audit_log_rotates_by_size_and_keeps_the_configured_backups(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    audit = AuditLog(AuditConfig(str(path), "Request", max_bytes=2_000, backups=2))
    for i in range(100):
        audit.record(
            AuditEvent(
                user="bob", groups=("dev",), method="/navarch.v1.Api/Get", verb="get", resource="pods", name=f"p{i}"
            )
        )
    audit.record(
        AuditEvent(user="bob", groups=(), method="m", verb="create", resource="secrets", request={"x": "s3cret"})
    )
    audit.close()
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["audit.log", "audit.log.1", "audit.log.2"]
    for name in files:
        assert (tmp_path / name).stat().st_size <= 2_000
        for line in (tmp_path / name).read_text().splitlines():
            entry = json.loads(line)
            assert entry["user"]["username"] == "bob" and entry["level"] == "Request"
    last = json.loads(path.read_text().splitlines()[-1])
    assert last["objectRef"]["resource"] == "secrets" and "requestObject" not in last
    assert "s3cret" not in path.read_text()


def test_level_none_writes_nothing(tmp_path: Path) -> None:
    audit = AuditLog(AuditConfig(str(tmp_path / "audit.log"), "None"))
    audit.record(AuditEvent(user="bob", groups=(), method="m"))
    audit.close()
    assert not (tmp_path / "audit.log").exists() or (tmp_path / "audit.log").read_text() == ""


def test_a_full_queue_drops_and_counts_events_with_one_warning_not_a_traceback_each(
    tmp_path: Path, capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    audit = AuditLog(AuditConfig(str(tmp_path / "audit.log"), "Metadata", queue_size=3))
    audit._listener.stop()  # the writer is stuck (a dead disk): nothing drains the queue
    with caplog.at_level(logging.WARNING, logger="controlplane.apiserver.audit"):
        for i in range(50):
            audit.record(AuditEvent(user="u", groups=(), method="m", name=f"n{i}"))
    assert audit.dropped == 47
    assert "Traceback" not in capfd.readouterr().err
    warnings = [r for r in caplog.records if "events dropped" in r.getMessage()]
    assert len(warnings) == 1 and "1 events dropped so far" in warnings[0].getMessage()
    audit._listener.start()
    audit.close()
    assert len((tmp_path / "audit.log").read_text().splitlines()) == 3  # the queued ones are still written
