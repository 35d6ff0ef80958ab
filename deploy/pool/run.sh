#!/usr/bin/env bash
# N dsocr instances behind HAProxy on one host:
#   deploy/pool/run.sh [N] [-- dsocr serve options...]
# Instances listen on 127.0.0.1:$((PORT+1))..$((PORT+N)); HAProxy on $HOST:$PORT (default
# 127.0.0.1:8001). Ctrl-C or SIGTERM stops HAProxy, then drains and stops every instance.
# DSOCR (default: .venv/bin/dsocr) is the command that runs the service (split on spaces).
set -euo pipefail
N=${1:-2}
shift || true
[ "${1:-}" = "--" ] && shift
HOST=${HOST:-127.0.0.1}
PORT=${PORT:-8001}
DSOCR=${DSOCR:-.venv/bin/dsocr}
HERE=$(cd "$(dirname "$0")" && pwd)
WORK=$(mktemp -d /tmp/dsocr-pool.XXXXXX)
pids=()

stop() {
    trap - INT TERM EXIT
    [ -n "${haproxy_pid:-}" ] && kill "$haproxy_pid" 2>/dev/null || true
    for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    wait || true
    rm -rf "$WORK"
}
trap stop INT TERM EXIT

servers=""
for i in $(seq 1 "$N"); do
    port=$((PORT + i))
    $DSOCR serve --host 127.0.0.1 --port "$port" "$@" &
    pids+=($!)
    servers+="    server s$i 127.0.0.1:$port"$'\n'
done

BIND="$HOST:$PORT" STATS_SOCKET="$WORK/admin.sock" SERVERS="$servers" python3 - "$HERE/haproxy.cfg.template" \
    > "$WORK/haproxy.cfg" <<'PY'
import os, string, sys
print(string.Template(open(sys.argv[1]).read()).substitute(os.environ))
PY
haproxy -c -q -f "$WORK/haproxy.cfg"
echo "pool of $N on http://$HOST:$PORT (runtime API: socat - UNIX:$WORK/admin.sock)"
haproxy -db -f "$WORK/haproxy.cfg" &
haproxy_pid=$!
wait "$haproxy_pid"
