#!/usr/bin/env bash
# The whole test suite, as CI runs it: lint, types, layering, then every test tier this machine can run.
# Usage: bash tests/run.sh [pytest arguments]
source "$(dirname "$0")/../deploy/env.sh"
echo "== ruff"
ruff check .
ruff format --check .
echo "== mypy"
mypy .
echo "== import layers"
lint-imports
echo "== generated code"
python tools/genproto.py --check
echo "== pytest"
exec python -m pytest "$@"
