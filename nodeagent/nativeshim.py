"""The compiled container supervisor (``nodeagent/native/shim.c``): built once per agent data dir, handed its
spec in the wire format it reads.

A Python supervisor, even forked from a pre-imported parent, is a whole interpreter: about 12 MiB resident
per container (2.6 MiB of it private). The compiled one does the same job (nodeagent/shim.py's: pipes into
CRI logs with rotation, start and exit records, a subreaper that ends what the workload left behind) in
under 2 MiB resident. It is built from source where the agent starts, because a wheel cannot carry a binary
for every machine: with ``$CC``, else ``cc``/``gcc``/``clang`` on the PATH, else the Zig toolchain from PyPI
(``pip install ziglang``, the ``native`` extra) for a machine that has nothing but pip. Without any, the
agent keeps the Python supervisor and says so once.

Guarantees:

- ``build`` never raises: it returns the binary's path, or None with the reason logged.
- The binary lives in ``DATA_DIR/bin/<source hash>/navarch-shim``, made by the agent (root-owned, 0755 in
  0755 directories that only the agent can write): a workload cannot replace what the next container runs.
  A changed source (an upgraded agent) builds a new one beside the old.
- The spec travels as NUL-terminated fields in a memfd, never on a command line (it holds the container's
  environment, Secrets included).
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

from nodeagent.shimspec import ShimSpec

log = logging.getLogger(__name__)

SOURCE = Path(__file__).with_name("native") / "shim.c"
BUILD_TIMEOUT = 120.0
"""Seconds a compiler may take (Zig's first run fills its cache: several seconds)."""


def compilers() -> list[list[str]]:
    """Compiler commands to try, in order: ``$CC``, cc, gcc, clang on the PATH, then ``python -m ziglang cc``."""
    found: list[list[str]] = []
    if os.environ.get("CC"):
        found.append(os.environ["CC"].split())
    for name in ("cc", "gcc", "clang"):
        path = shutil.which(name)
        if path:
            found.append([path])
    if importlib.util.find_spec("ziglang") is not None:
        found.append([sys.executable, "-m", "ziglang", "cc"])
    return found


def build(data_dir: Path) -> Path | None:
    """The compiled supervisor for this agent (built on first use); None if it cannot be had."""
    try:
        source = SOURCE.read_bytes()
    except OSError as err:
        log.warning("no native shim source (%s): containers get the Python supervisor", err)
        return None
    digest = hashlib.sha256(source).hexdigest()[:16]
    target = data_dir / "bin" / digest / "navarch-shim"
    if target.is_file() and os.access(target, os.X_OK):
        return target
    try:
        target.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
        for directory in (data_dir / "bin", target.parent):
            directory.chmod(0o755)
    except OSError as err:
        log.warning("cannot make %s (%s): containers get the Python supervisor", target.parent, err)
        return None
    tmp = target.with_name(f".navarch-shim.{os.getpid()}")
    errors = []
    for compiler in compilers():
        try:
            done = subprocess.run(
                [*compiler, "-O2", "-s", "-o", str(tmp), str(SOURCE)],
                capture_output=True,
                text=True,
                timeout=BUILD_TIMEOUT,
                stdin=subprocess.DEVNULL,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as err:
            errors.append(f"{compiler[0]}: {err}")
            continue
        if done.returncode == 0 and tmp.is_file():
            tmp.chmod(0o755)
            tmp.replace(target)
            log.info("built the native container supervisor %s with %s", target, " ".join(compiler))
            return target
        errors.append(f"{' '.join(compiler)}: {(done.stderr or done.stdout).strip()[-500:]}")
        tmp.unlink(missing_ok=True)
    reason = "; ".join(errors) or "no C compiler (install one, or `pip install ziglang`)"
    log.warning("cannot build the native container supervisor: %s; containers get the Python supervisor", reason)
    return None


def wire_spec(spec: ShimSpec, oom_score_adj: str | None) -> bytes:
    """The spec as the compiled supervisor reads it: NUL-terminated fields (see the head of shim.c)."""
    fields = [
        spec.state_dir,
        spec.log_path,
        str(spec.log_max_bytes),
        str(spec.log_keep),
        "-" if spec.uid is None else str(spec.uid),
        "-" if spec.gid is None else str(spec.gid),
        str(len(spec.groups)),
        *(str(g) for g in spec.groups),
        str(spec.rlimit_as),
        "-" if oom_score_adj is None else oom_score_adj,
        spec.cwd,
        str(len(spec.argv)),
        *spec.argv,
        str(len(spec.env)),
        *(f"{k}={v}" for k, v in spec.env.items()),
    ]
    for f in fields:
        if "\0" in f:
            raise ValueError("a NUL byte in the container's command or environment")
    return b"".join(os.fsencode(f) + b"\0" for f in fields)
