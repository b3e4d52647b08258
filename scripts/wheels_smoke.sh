#!/usr/bin/env bash
# The installed-wheel smoke of `make wheels-test` (x86_64, in a fresh venv) and of
# `make wheels-test-arm64` (aarch64, inside an emulated arm64 Debian root): with the `warren` given
# (default: the one on PATH), print its versions, found a one-node cluster on 127.0.0.1 (free ports,
# a temporary data dir) whose local worker runs the process runtime, create a service whose task is
# `python3 -m http.server`, wait until `warren service ps` says running and the task answers HTTP,
# remove the service, then stop the manager with SIGTERM and require exit status 0.
# Every wait has a deadline: SMOKE_DEADLINE seconds each (default 120; the emulated run passes more).
set -euo pipefail
WARREN=${WARREN:-warren}
PYTHON=${PYTHON:-python3}
DEADLINE=${SMOKE_DEADLINE:-120}
start_all=$(date +%s)

step() { echo "== smoke: $* (+$(( $(date +%s) - start_all )) s)"; }

# wait_for DESCRIPTION COMMAND...: run COMMAND every 0.5 s until it succeeds, at most DEADLINE s;
# gives up at once when the manager has exited.
wait_for() {
    local what=$1; shift
    local until=$(( $(date +%s) + DEADLINE ))
    until "$@" >/dev/null 2>&1; do
        if [ -n "${MANAGER:-}" ] && ! kill -0 "$MANAGER" 2>/dev/null; then
            echo "smoke: FAIL: the manager exited while waiting for $what; its log ends with:" >&2
            tail -n 30 "$DATA/manager.log" >&2
            exit 1
        fi
        if [ "$(date +%s)" -ge "$until" ]; then
            echo "smoke: FAIL: no $what after ${DEADLINE} s; the manager's log ends with:" >&2
            tail -n 30 "$DATA/manager.log" >&2
            exit 1
        fi
        sleep 0.5
    done
}

read -r API_PORT RAFT_PORT METRICS_PORT WEB_PORT < <("$PYTHON" - <<'PY'
import socket
socks = [socket.socket() for _ in range(4)]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in socks))
PY
)
API=127.0.0.1:$API_PORT
DATA=$(mktemp -d "${TMPDIR:-/tmp}/warren-smoke.XXXXXX")
# The admin certificate `cluster init` writes goes there too, not to ~/.config.
export WARREN_CONFIG_DIR=$DATA/config
MANAGER=
cleanup() {
    if [ -n "$MANAGER" ] && kill -0 "$MANAGER" 2>/dev/null; then kill -KILL "$MANAGER" 2>/dev/null || true; fi
    pkill -KILL -f "http.server $WEB_PORT " 2>/dev/null || true
    rm -rf "$DATA"
}
trap cleanup EXIT

step "versions"
"$WARREN" --version
"$PYTHON" -c 'import platform, sys; print("python", sys.version.split()[0], platform.machine())'

step "cluster init on $API (data $DATA, runtime process)"
"$WARREN" cluster init --listen-addr "$API" --raft-addr "127.0.0.1:$RAFT_PORT" \
    --metrics-addr "127.0.0.1:$METRICS_PORT" --data-dir "$DATA" --runtime process \
    2>"$DATA/manager.log" &
MANAGER=$!
wait_for "answer from the manager" "$WARREN" cluster info --manager "$API" --timeout 0s
"$WARREN" cluster info --manager "$API"

step "service create smoke (process driver)"
"$WARREN" service create smoke --detach --manager "$API" --driver process --image python3 \
    --command "python3 -m http.server $WEB_PORT --bind 127.0.0.1" >/dev/null
running() { "$WARREN" service ps smoke --manager "$API" -o json | grep -q '"state": *"running"'; }
wait_for "running task of the service" running
"$WARREN" service ps smoke --manager "$API"
answers() { "$PYTHON" -c "import urllib.request as u; u.urlopen('http://127.0.0.1:$WEB_PORT/', timeout=5)"; }
wait_for "HTTP answer from the task on 127.0.0.1:$WEB_PORT" answers
echo "the task answers on 127.0.0.1:$WEB_PORT"

step "service rm smoke"
"$WARREN" service rm smoke --manager "$API" >/dev/null
gone() { ! answers; }
wait_for "end of the task after service rm" gone

step "SIGTERM to the manager (pid $MANAGER)"
kill -TERM "$MANAGER"
until=$(( $(date +%s) + DEADLINE ))
while kill -0 "$MANAGER" 2>/dev/null; do
    if [ "$(date +%s)" -ge "$until" ]; then
        echo "smoke: FAIL: the manager did not stop within ${DEADLINE} s of SIGTERM" >&2
        exit 1
    fi
    sleep 0.2
done
status=0
wait "$MANAGER" || status=$?
MANAGER=
if [ "$status" != 0 ]; then
    echo "smoke: FAIL: the manager exited with status $status after SIGTERM; its log ends with:" >&2
    tail -n 30 "$DATA/manager.log" >&2
    exit 1
fi
echo "smoke: PASS: the manager exited 0 after SIGTERM; $(( $(date +%s) - start_all )) s in all"
