# Sourced by the set-up scripts: make (or reuse) the project's virtual environment with Python >= 3.11.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${NAVARCH_VENV:-$ROOT/.venv}"
if [ ! -x "$VENV/bin/python" ]; then
  PY="${PYTHON:-}"
  if [ -z "$PY" ]; then
    for candidate in python3.11 python3.12 python3.13 python3; do
      if command -v "$candidate" >/dev/null 2>&1; then PY="$candidate"; break; fi
    done
  fi
  "$PY" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Navarch needs Python >= 3.11")'
  "$PY" -m venv "$VENV"
fi
# Install (or refresh) the project with its test and dev tools; quiet unless it fails.
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip >/dev/null
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -e "$ROOT[dev]"
export PATH="$VENV/bin:$PATH"
cd "$ROOT"
