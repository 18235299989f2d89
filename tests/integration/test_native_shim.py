"""The compiled container supervisor (nodeagent/native/shim.c) against the Python one (nodeagent/shim.py),
workload by workload: the same log records (timestamps aside), the same start and exit records, the same
StartError messages, the same rotation, the same end for what a workload leaves behind. The Python shim is
the reference (a separate implementation, run as its own process), real processes on both sides.

Plausible bugs each case would catch: a long line not split at 16 KiB, a last line without newline lost,
stderr tagged stdout, an exit by signal recorded as a plain exit code, a command looked up in the agent's
PATH instead of the workload's, a missing working directory reported as a missing command, a daemon that
setsid'd away surviving its container, a rotation keeping one file too many, the workload keeping root."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from nodeagent import nativeshim
from nodeagent.shimspec import ShimSpec

PATH = "/usr/local/bin:/usr/bin:/bin"
TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z ")


@pytest.fixture(scope="module")
def native(tmp_path_factory: pytest.TempPathFactory) -> Path:
    built = nativeshim.build(tmp_path_factory.mktemp("native"))
    if built is None:
        pytest.skip("no C compiler here: the agent falls back to the Python supervisor")
    return built


def _spec(state: Path, argv: list[str], **extra: object) -> ShimSpec:
    state.mkdir(parents=True)
    fields: dict[str, object] = {
        "argv": argv,
        "env": {"PATH": PATH, "GREETING": "hello"},
        "cwd": str(state),
        "state_dir": str(state),
        "log_path": str(state / "log"),
    }
    fields.update(extra)
    return ShimSpec(**fields)  # type: ignore[arg-type]


def _run_python(spec: ShimSpec) -> None:
    path = spec.write(Path(spec.state_dir))
    subprocess.run([sys.executable, "-m", "nodeagent.shim", str(path)], timeout=60, check=True, cwd="/")
    path.unlink()


def _run_native(native: Path, spec: ShimSpec) -> None:
    fd = os.memfd_create("spec", 0)
    try:
        os.write(fd, nativeshim.wire_spec(spec, None))
        subprocess.run([str(native), str(fd)], pass_fds=[fd], timeout=60, check=True, cwd="/")
    finally:
        os.close(fd)


def _records(state: Path) -> dict[str, object]:
    """What a supervisor left, timestamps and pids taken out."""
    logs = {}
    for f in sorted(state.glob("log*")):
        lines = f.read_text(errors="replace").splitlines()
        assert all(TIME.match(line) for line in lines), lines[:3]
        records = [TIME.sub("", line) for line in lines]
        # The two streams are read concurrently: their relative order is the scheduler's, each one's own is not.
        logs[f.name] = sorted(records, key=lambda r: r.startswith("stderr"))
    exit_record = json.loads((state / "exit.json").read_text())
    exit_record.pop("finished_at")
    started = state / "started.json"
    return {
        "logs": logs,
        "exit": exit_record,
        "started": sorted(json.loads(started.read_text())) if started.exists() else None,
        "modes": {f.name: (f.stat().st_mode & 0o777, f.stat().st_uid) for f in sorted(state.iterdir())},
    }


CASES: dict[str, tuple[list[str], dict[str, object]]] = {
    "lines on both streams": (["sh", "-c", "echo out; echo err >&2; echo $GREETING; printf 'no newline'"], {}),
    "a long line in partial records": (["sh", "-c", "head -c 40000 /dev/zero | tr '\\0' x; echo; echo after"], {}),
    "an exit code": (["sh", "-c", "echo bye; exit 3"], {}),
    "killed by a signal": (["sh", "-c", "kill -TERM $$"], {}),
    "a command that is not there": (["no-such-command-anywhere"], {}),
    "a working directory that is not there": (["true"], {"cwd": "/no/such/directory"}),
    "rotation": (
        ["sh", "-c", "i=0; while [ $i -lt 400 ]; do echo line $i; i=$((i+1)); done"],
        {"log_max_bytes": 4000, "log_keep": 2},
    ),
    "no rotated files kept": (
        ["sh", "-c", "i=0; while [ $i -lt 200 ]; do echo line $i; i=$((i+1)); done"],
        {"log_max_bytes": 3000, "log_keep": 0},
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_the_native_supervisor_leaves_what_the_python_one_leaves(case: str, native: Path, tmp_path: Path) -> None:
    argv, extra = CASES[case]
    python_spec = _spec(tmp_path / "python", argv, **extra)
    native_spec = _spec(tmp_path / "native", argv, **extra)
    if "cwd" not in extra:
        native_spec = ShimSpec(**{**native_spec.__dict__, "cwd": python_spec.cwd})
    _run_python(python_spec)
    _run_native(native, native_spec)
    assert _records(tmp_path / "native") == _records(tmp_path / "python")


def test_the_workload_runs_as_its_user_and_owns_its_log(native: Path, tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("switching users needs root")
    tmp_path.chmod(0o755)
    argv = ["sh", "-c", "id -u; id -g; id -G"]
    extra = {"uid": 65534, "gid": 65534, "groups": [65534, 4242], "cwd": "/"}
    _run_python(_spec(tmp_path / "python", argv, **extra))
    _run_native(native, _spec(tmp_path / "native", argv, **extra))
    native_records = _records(tmp_path / "native")
    assert native_records == _records(tmp_path / "python")
    assert native_records["logs"] == {"log": ["stdout F 65534", "stdout F 65534", "stdout F 65534 4242"]}
    assert native_records["modes"]["log"] == (0o640, 65534)  # type: ignore[index]


def test_what_a_workload_leaves_behind_ends_with_it(native: Path, tmp_path: Path) -> None:
    """A daemon that setsid'd away (out of the process group the agent signals) is killed when the main
    process ends: the supervisor is a subreaper."""
    marker = f"sleep 300.{os.getpid()}"
    script = f"(setsid {marker} &); sleep 0.3; pgrep -f '^{marker}$' > /dev/null && echo started; exit 0"
    _run_native(native, _spec(tmp_path / "native", ["sh", "-c", script]))
    assert (tmp_path / "native" / "log").read_text().endswith("stdout F started\n")  # it did run
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        left = subprocess.run(["pgrep", "-f", f"^{marker}$"], capture_output=True, text=True, check=False).stdout
        if not left:
            break
        time.sleep(0.1)
    assert not left, f"left running: {left}"
    assert json.loads((tmp_path / "native" / "exit.json").read_text())["reason"] == "Completed"


def test_a_nul_byte_in_the_environment_is_refused_before_the_supervisor_starts(tmp_path: Path) -> None:
    spec = _spec(tmp_path / "s", ["true"], env={"A": "x\0y"})
    with pytest.raises(ValueError, match="NUL"):
        nativeshim.wire_spec(spec, None)
