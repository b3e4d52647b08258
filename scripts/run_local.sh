#!/usr/bin/env bash
# `make run`: start a single-node Warren cluster on this machine and leave it running in the foreground.
#
# The manager listens on 127.0.0.1 (API 8080, Raft 7946, metrics 9090; override with WARREN_RUN_API,
# WARREN_RUN_RAFT, WARREN_RUN_METRICS) and keeps its state in .warren/run (WARREN_RUN_DATA). Rerunning
# resumes the same cluster. Ctrl-C stops it gracefully.
#
# The manager also runs a local worker (a "hybrid" node). With a Docker Engine answering, the demo
# service runs as containers of the local image warren-busybox (built here from Debian's static
# busybox: no registry is needed) serving a page on 127.0.0.1:8088; without one, the process runtime
# runs it as a plain `python3 -m http.server` on the same port. The process runtime runs unconfined host
# commands, so a worker offers it only when asked: hence the explicit --runtime below (auto = docker).
set -euo pipefail

cd "$(dirname "$0")/.."
WARREN=.venv/bin/warren
API=${WARREN_RUN_API:-127.0.0.1:8080}
RAFT=${WARREN_RUN_RAFT:-127.0.0.1:7946}
METRICS=${WARREN_RUN_METRICS:-127.0.0.1:9090}
DATA=${WARREN_RUN_DATA:-.warren/run}
DEMO_PORT=${WARREN_RUN_DEMO_PORT:-8088}
# Devices the local worker gives to tasks: /dev/null stands in for the USB radio of
# examples/edge-stack.yaml's hub (a harmless device; a real board lists /dev/ttyUSB0 and the like).
ALLOW_DEVICE=${WARREN_RUN_ALLOW_DEVICE:-/dev/null}
mkdir -p "$DATA"
LOG="$DATA/manager.log"

if docker info >/dev/null 2>&1; then
    RUNTIME=docker
    bash scripts/build_image.sh >&2
else
    RUNTIME=process
    echo "warren: no Docker Engine answers; the demo runs on the process runtime" >&2
fi

"$WARREN" cluster init --listen-addr "$API" --raft-addr "$RAFT" --metrics-addr "$METRICS" \
    --data-dir "$DATA" --runtime "$RUNTIME" --allow-device "$ALLOW_DEVICE" 2>"$LOG" &
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
    if [ "$RUNTIME" = docker ]; then
        "$WARREN" service create demo --detach --manager "$API" --image warren-busybox:latest \
            --command "httpd -f -p 8080 -h /www" --publish "$DEMO_PORT:8080" \
            --health-http 8080/ --health-interval 1s >/dev/null
    else
        # Host mode: the process binds 127.0.0.1:$DEMO_PORT itself (an ingress port would need a target
        # port of its own, and the worker's ingress proxy would listen on $DEMO_PORT).
        "$WARREN" service create demo --detach --manager "$API" --driver process --image python3 \
            --command "python3 -m http.server $DEMO_PORT --bind 127.0.0.1" \
            --publish "mode=host,published=$DEMO_PORT,target=$DEMO_PORT" \
            --health-tcp "$DEMO_PORT" --health-interval 1s >/dev/null
    fi
fi

# Wait (up to 60 s) until the demo's task runs, so `service ps` shows it running.
for _ in $(seq 1 300); do
    if "$WARREN" service ps demo --manager "$API" -o json 2>/dev/null | grep -q '"state": *"running"'; then
        break
    fi
    sleep 0.2
done
echo
"$WARREN" cluster info --manager "$API"
echo
"$WARREN" service ps demo --manager "$API"
echo
echo "Warren is running (manager pid $MANAGER, runtime $RUNTIME, log $LOG). Try, in another terminal:"
echo "  curl -s http://127.0.0.1:$DEMO_PORT/"
if [ "$RUNTIME" = docker ]; then
    echo "  docker kill \$(docker ps -q --filter label=warren.service.name=demo)   # it comes back by itself"
fi
echo "  .venv/bin/warren service ps demo --manager $API"
echo "  .venv/bin/warren node list --manager $API"
echo "  curl -s http://$METRICS/metrics | grep -E 'warren_(raft|tasks)'"
echo "Press Ctrl-C to stop it."
wait "$MANAGER"
