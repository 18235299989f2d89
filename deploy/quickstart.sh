#!/usr/bin/env bash
# Start a Navarch cluster on this machine (etcd, API server, agent, scheduler, controller manager) and show
# it working.
# Usage: bash deploy/quickstart.sh [--exit]     (--exit: stop after the demonstration)
source "$(dirname "$0")/env.sh"
exec python deploy/quickstart.py "$@"
