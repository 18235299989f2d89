"""The guided tour (deploy/quickstart.py) that CI runs stops at the first command that fails, naming it and its
exit code; it used to print the failure and carry on (plausible bug: a broken `navarch logs` passing CI)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from deploy.quickstart import show


def _fake_navarch(tmp_path: Path, code: int) -> dict[str, str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "navarch"
    script.write_text(f"#!/bin/sh\necho 'from the fake navarch'\nexit {code}\n")
    script.chmod(0o755)
    return {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}


def test_a_failing_command_ends_the_tour(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit, match=r"`navarch logs hello` exited 3"):
        show(_fake_navarch(tmp_path, 3), ["logs", "hello"])
    assert "from the fake navarch" in capsys.readouterr().out


def test_a_succeeding_command_goes_on(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    show(_fake_navarch(tmp_path, 0), ["get", "nodes"])
    assert "$ navarch get nodes" in capsys.readouterr().out
