"""The newcomer's install: a fresh virtual environment with exactly the README's install line, a fresh HOME,
and every console script starts.

This is what failed when ``cryptography`` lived only in the ``test`` extra: the suite installs ``.[dev]``
and never saw it. Each install here copies the working tree (committed or not) so the test checks the tree
under test, and runs the line the README shows, so that if the README's line changes, the test follows it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from tools.readme_blocks import README, blocks

ROOT = README.parent
SCRIPTS = sorted(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"])
PACKAGES = ("controlplane", "nodeagent", "cli")


def readme_install_line() -> str:
    """The README set-up block's install command (the part of its first line from ``pip install``)."""
    setup = next(b for b in blocks(README.read_text()) if b.role == "setup")
    first = next(c for c in setup.commands() if "pip install" in c)
    return "pip install" + first.split("pip install", 1)[1].split("&&")[0].rstrip()


def copy_tree(dest: Path) -> None:
    """The working tree as git sees it (tracked and new files, nothing ignored: no .venv, no caches)."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.decode()
    for rel in filter(None, listed.split("\0")):
        src = ROOT / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)


def newcomer_env(home: Path, venv: Path) -> dict[str, str]:
    """A shell with only the new environment on PATH and nothing of ours in HOME or the environment."""
    keep = [p for p in os.environ.get("PATH", "").split(os.pathsep) if p and str(Path(sys.executable).parent) != p]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NAVARCH_", "VIRTUAL_ENV", "XDG_", "PYTHON"))}
    env.update(HOME=str(home), PATH=os.pathsep.join([str(venv / "bin"), *keep]), VIRTUAL_ENV=str(venv))
    return env


@pytest.fixture(scope="module", params=["readme", "bare"])
def installed(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """A fresh clone and venv with the README's install line ("readme") or plain ``pip install -e .`` ("bare",
    which the README offers where etcd is already on PATH)."""
    base = tmp_path_factory.mktemp(f"newcomer-{request.param}")
    repo, home, venv = base / "navarch", base / "home", base / "venv"
    repo.mkdir()
    home.mkdir()
    copy_tree(repo)
    base_python = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([base_python, "-m", "venv", str(venv)], check=True, timeout=120)
    env = newcomer_env(home, venv)
    line = readme_install_line() if request.param == "readme" else "pip install -e ."
    done = subprocess.run(
        ["bash", "-c", f"{line} --quiet --disable-pip-version-check"],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, f"{line}: {done.stderr[-3000:]}"
    return repo, env


def run(installed: tuple[Path, dict[str, str]], *args: str) -> subprocess.CompletedProcess[str]:
    repo, env = installed
    return subprocess.run(list(args), cwd=repo, env=env, capture_output=True, text=True, timeout=60, check=False)


def test_the_readme_install_line_is_the_one_this_test_runs() -> None:
    assert readme_install_line().startswith("pip install -e '.[local]'")


@pytest.mark.parametrize("script", SCRIPTS)
def test_every_console_script_starts(installed: tuple[Path, dict[str, str]], script: str) -> None:
    out = run(installed, script, "--help")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "Traceback" not in out.stderr
    assert "Usage:" in out.stdout


def test_navarch_version(installed: tuple[Path, dict[str, str]]) -> None:
    client = run(installed, "navarch", "version", "--client")
    assert client.returncode == 0 and client.stdout.startswith("Client Version: 0."), client.stderr
    # No cluster here: one line saying so, no traceback.
    server = run(installed, "navarch", "--server", "127.0.0.1:9", "--request-timeout", "2", "version")
    assert server.returncode != 0 and server.stdout.startswith("Client Version:")
    assert "Traceback" not in server.stderr and len(server.stderr.strip().splitlines()) == 1, server.stderr


def test_every_module_imports(installed: tuple[Path, dict[str, str]]) -> None:
    """Not only what --help reaches: every module of the installed packages imports with base dependencies."""
    code = (
        "import importlib, pkgutil\n"
        f"for top in {PACKAGES!r}:\n"
        "    pkg = importlib.import_module(top)\n"
        "    for m in pkgutil.walk_packages(pkg.__path__, top + '.'):\n"
        "        importlib.import_module(m.name)\n"
        "print('ok')\n"
    )
    out = run(installed, "python", "-c", code)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-3000:]
