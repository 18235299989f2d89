"""The integration tier's terminal summary: figures a test wants in every run's output (the property test's
seed, so that a failure found in CI can be replayed)."""

from __future__ import annotations

from typing import Any

SUMMARY: list[str] = []


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if SUMMARY:
        terminalreporter.section("integration figures")
        for line in SUMMARY:
            terminalreporter.write_line(line)
