"""Run the real ``navarch`` command as a subprocess against the session's API server."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from controlplane.apiserver.main import ApiServer

NAVARCH = str(Path(sys.executable).parent / "navarch")


@dataclass
class Result:
    """A finished CLI run."""

    code: int
    out: str
    err: str


Cli = Callable[..., Coroutine[Any, Any, Result]]


@pytest.fixture
def cli_env(apiserver: ApiServer, tmp_path: Path) -> dict[str, str]:
    """Environment for CLI runs: the session server, a private config file."""
    env = {**os.environ, "NAVARCH_SERVER": f"127.0.0.1:{apiserver.port}", "NAVARCH_CONFIG": str(tmp_path / "config")}
    env.pop("EDITOR", None)
    return env


@pytest.fixture
def cli(cli_env: dict[str, str]) -> Cli:
    """``await cli("get", "pods", "-n", ns)``: run navarch without blocking the event loop."""

    async def run(
        *args: str, stdin: str | None = None, env: dict[str, str] | None = None, timeout: float = 60
    ) -> Result:
        proc = await asyncio.to_thread(
            subprocess.run,
            [NAVARCH, *args],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=timeout,
            env={**cli_env, **(env or {})},
            check=False,
        )
        return Result(proc.returncode, proc.stdout, proc.stderr)

    return run
