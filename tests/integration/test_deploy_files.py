"""deploy/systemd: every unit's ExecStart names a variable its env file defines, and every flag in the env
files is one the component (or etcd) accepts, so the multi-host walkthrough cannot drift from the code."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from controlplane.launcher.etcd import find_etcd_binary

SYSTEMD = Path(__file__).resolve().parents[2] / "deploy" / "systemd"
BIN = Path(sys.executable).parent
UNITS = sorted(SYSTEMD.glob("*.service"))


def _env_file(unit: Path) -> tuple[str, list[str]]:
    text = unit.read_text()
    env = re.search(r"^EnvironmentFile=/etc/navarch/(\S+)$", text, re.M)
    exec_start = re.search(r"^ExecStart=(\S+) \$(\w+)$", text, re.M)
    assert env and exec_start, f"{unit.name}: EnvironmentFile and ExecStart=BINARY $VAR expected"
    values = (SYSTEMD / "env" / env.group(1)).read_text()
    found = re.search(rf'^{exec_start.group(2)}="(.*?)"$', values, re.M | re.S)
    assert found, f"{env.group(1)} does not define {exec_start.group(2)}"
    return exec_start.group(1), shlex.split(found.group(1).replace("\\\n", " "))


@pytest.mark.parametrize("unit", UNITS, ids=lambda u: u.stem)
def test_the_units_flags_are_ones_the_component_accepts(unit: Path) -> None:
    binary, args = _env_file(unit)
    name = Path(binary).name
    program = find_etcd_binary() if name == "etcd" else str(BIN / name)
    help_text = subprocess.run([program, "--help"], capture_output=True, text=True, timeout=30, check=False)
    usage = help_text.stdout + help_text.stderr
    flags = [a.split("=", 1)[0] for a in args if a.startswith("--")]
    assert flags, unit.name
    unknown = [f for f in flags if not re.search(rf"(^|\s){re.escape(f)}([\s=,]|$)", usage, re.M)]
    assert not unknown, f"{unit.name}: {name} does not know {unknown}"
