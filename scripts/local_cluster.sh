#!/usr/bin/env bash
echo "local_cluster.sh: the simulator, Coordinator and Controller are not built yet; nothing to start." >&2
exit 1
