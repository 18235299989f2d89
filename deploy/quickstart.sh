#!/usr/bin/env bash
# Start what exists of a Navarch cluster on this machine (etcd + API server) and show it working.
# Usage: bash deploy/quickstart.sh [--exit]     (--exit: stop after the demonstration)
source "$(dirname "$0")/env.sh"
exec python deploy/quickstart.py "$@"
