#!/usr/bin/env bash
# `make run`: start a single-node Warren cluster on this machine and leave it running in the foreground.
#
# The manager listens on 127.0.0.1 (API 8080, Raft 7946, metrics 9090; override with WARREN_RUN_API,
# WARREN_RUN_RAFT, WARREN_RUN_METRICS) and keeps its state in .warren/run (WARREN_RUN_DATA). Rerunning
# resumes the same cluster. Ctrl-C stops it gracefully. Workers (and running the demo service's
# containers) arrive with the next release; until then the demo service is recorded, not run.
set -euo pipefail

cd "$(dirname "$0")/.."
WARREN=.venv/bin/warren
API=${WARREN_RUN_API:-127.0.0.1:8080}
RAFT=${WARREN_RUN_RAFT:-127.0.0.1:7946}
METRICS=${WARREN_RUN_METRICS:-127.0.0.1:9090}
DATA=${WARREN_RUN_DATA:-.warren/run}
mkdir -p "$DATA"
LOG="$DATA/manager.log"

"$WARREN" cluster init --listen-addr "$API" --raft-addr "$RAFT" --metrics-addr "$METRICS" \
    --data-dir "$DATA" 2>"$LOG" &
MANAGER=$!
trap 'kill -TERM "$MANAGER" 2>/dev/null; wait "$MANAGER" 2>/dev/null || true' INT TERM EXIT

# Wait until the manager answers (or has died: then show why).
for _ in $(seq 1 150); do
    if ! kill -0 "$MANAGER" 2>/dev/null; then
        echo "warren: the manager stopped; its log ($LOG) ends with:" >&2
        tail -n 20 "$LOG" >&2
        exit 1
    fi
    if "$WARREN" cluster info --manager "$API" >/dev/null 2>&1; then
        break
    fi
    sleep 0.2
done

if ! "$WARREN" service inspect demo --manager "$API" >/dev/null 2>&1; then
    "$WARREN" service create demo --image busybox --replicas 2 --manager "$API" >/dev/null
fi
echo
"$WARREN" cluster info --manager "$API"
echo
"$WARREN" service list --manager "$API"
echo
echo "Warren is running (manager pid $MANAGER, log $LOG). Try, in another terminal:"
echo "  .venv/bin/warren cluster join-token manager --manager $API"
echo "  .venv/bin/warren service list --manager $API"
echo "  curl -s http://$METRICS/metrics | grep warren_raft_"
echo "Press Ctrl-C to stop it."
wait "$MANAGER"
