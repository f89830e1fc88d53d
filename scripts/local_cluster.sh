#!/usr/bin/env bash
# Starts a local MindIE-MS cluster on simulated servers (see scripts/local_cluster.py --help).
exec python3 "$(dirname "$0")/local_cluster.py" "$@"
