#!/usr/bin/env bash
# The whole service on one machine: a Mosquitto broker, N analyzers, HAProxy in front of them, and a
# supervisor dashboard that shows every call. The model of a multi-machine deployment (docs/scaling.md):
# there each analyzer runs on its own host and HAProxy lists them in deploy/haproxy.cfg.
#
# Usage: deploy/local-cluster.sh N [analyzer options...]     e.g. deploy/local-cluster.sh 2 --workers 1
# Ctrl-C (or SIGTERM) stops everything. Ports and the working folder come from the environment:
#   CALLS_PORT (8080: /twilio and /fork), AUDIOSOCKET_PORT (9092), DASHBOARD_PORT (8765: the supervisor),
#   MQTT_PORT (1883), FIRST_ANALYZER_PORT (8801: analyzer k listens on FIRST_ANALYZER_PORT + k - 1),
#   FIRST_AUDIOSOCKET_PORT (9101), MAX_PER_ADDRESS (1000), CLUSTER_DIR (a new temporary folder).
# CLUSTER_DIR holds the rendered configurations, each process's log and pid (analyzer-K.pid, ...).
# A rolling upgrade: `kill -USR1 $(cat $CLUSTER_DIR/analyzer-1.pid)` drains analyzer 1 (no new calls,
# exit once its calls end); start the new version on its port; then the next one.
set -euo pipefail
cd "$(dirname "$0")/.."

count="${1:-}"
if ! [[ "$count" =~ ^[1-9][0-9]*$ ]]; then
  echo "usage: deploy/local-cluster.sh N [analyzer options...]   (N analyzers, at least 1)" >&2
  exit 2
fi
shift
scripts/bootstrap.sh cluster

export CALLS_PORT="${CALLS_PORT:-8080}" AUDIOSOCKET_PORT="${AUDIOSOCKET_PORT:-9092}"
export DASHBOARD_PORT="${DASHBOARD_PORT:-8765}" MQTT_PORT="${MQTT_PORT:-1883}"
FIRST_ANALYZER_PORT="${FIRST_ANALYZER_PORT:-8801}"
FIRST_AUDIOSOCKET_PORT="${FIRST_AUDIOSOCKET_PORT:-9101}"
export MAX_PER_ADDRESS="${MAX_PER_ADDRESS:-1000}"
export CLUSTER_DIR="${CLUSTER_DIR:-$(mktemp -d -t emotion-cluster-XXXXXX)}"
export CALLS_BIND="127.0.0.1:$CALLS_PORT" AUDIOSOCKET_BIND="127.0.0.1:$AUDIOSOCKET_PORT"
mkdir -p "$CLUSTER_DIR"
broker="mqtt://127.0.0.1:$MQTT_PORT"
python=.venv/bin/python
pids=()

stop_all() {
  trap - INT TERM EXIT
  [ ${#pids[@]} -gt 0 ] && kill -TERM "${pids[@]}" 2>/dev/null || true
  wait 2>/dev/null || true
}
trap 'stop_all; exit 0' INT TERM
trap stop_all EXIT

start() {  # name, command...: run it in the background, logging to CLUSTER_DIR/name.log
  local name="$1"
  shift
  "$@" >"$CLUSTER_DIR/$name.log" 2>&1 &
  pids+=($!)
  echo $! >"$CLUSTER_DIR/$name.pid"
}

wait_ready() {  # name, url: until it answers 200 (a minute at most)
  for _ in $(seq 600); do
    if "$python" -c "import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=1)" "$2" 2>/dev/null; then
      return 0
    fi
    if ! kill -0 "$(cat "$CLUSTER_DIR/$1.pid")" 2>/dev/null; then
      echo "local-cluster: $1 exited; its log ($CLUSTER_DIR/$1.log) ends:" >&2
      tail -n 5 "$CLUSTER_DIR/$1.log" >&2
      exit 1
    fi
    sleep 0.1
  done
  echo "local-cluster: $1 did not become ready; see $CLUSTER_DIR/$1.log" >&2
  exit 1
}

printf 'listener %s 127.0.0.1\nallow_anonymous true\npersistence false\n' "$MQTT_PORT" >"$CLUSTER_DIR/mosquitto.conf"
start broker mosquitto -c "$CLUSTER_DIR/mosquitto.conf"

http_servers="" audiosocket_servers=""
for k in $(seq "$count"); do
  port=$((FIRST_ANALYZER_PORT + k - 1))
  audiosocket=$((FIRST_AUDIOSOCKET_PORT + k - 1))
  # --max-per-address 0: every connection comes from HAProxy's address; HAProxy caps per caller instead.
  # --own-streams-only: the supervisor shows every call; each analyzer needs none of the others' traffic.
  start "analyzer-$k" "$python" run_stream.py --serve --mqtt "$broker" --port "$port" \
    --audiosocket "127.0.0.1:$audiosocket" --max-per-address 0 --own-streams-only "$@"
  http_servers+="    server analyzer-$k 127.0.0.1:$port check\n"
  audiosocket_servers+="    server analyzer-$k 127.0.0.1:$audiosocket check port $port\n"
done
sed -e "s|^    # @servers http\$|${http_servers%\\n}|" -e "s|^    # @servers audiosocket\$|${audiosocket_servers%\\n}|" \
  deploy/haproxy.cfg >"$CLUSTER_DIR/haproxy.cfg"
haproxy -c -q -f "$CLUSTER_DIR/haproxy.cfg"
start haproxy haproxy -db -f "$CLUSTER_DIR/haproxy.cfg"
# The supervisor: a dashboard of every call on the broker. It takes no calls itself behind HAProxy: one
# analysis thread (for uploads) is enough.
start supervisor "$python" run_stream.py --serve --mqtt "$broker" --port "$DASHBOARD_PORT" --workers 1 --analysis threads

for k in $(seq "$count"); do
  wait_ready "analyzer-$k" "http://127.0.0.1:$((FIRST_ANALYZER_PORT + k - 1))/readyz"
done
wait_ready supervisor "http://127.0.0.1:$DASHBOARD_PORT/readyz"
# Ready when HAProxy's health checks have seen every analyzer up (its stats socket, as CSV).
"$python" - "$CLUSTER_DIR/haproxy.sock" "$count" <<'PY' || { echo "local-cluster: HAProxy does not see every analyzer up" >&2; exit 1; }
import socket, sys, time
deadline = time.monotonic() + 30
while time.monotonic() < deadline:
    try:
        with socket.socket(socket.AF_UNIX) as sock:
            sock.connect(sys.argv[1])
            sock.sendall(b"show stat\n")
            rows = b"".join(iter(lambda: sock.recv(65536), b"")).decode().splitlines()
        up = [r for r in rows if r.startswith("analyzers,analyzer-") and ",UP," in r]
        if len(up) == int(sys.argv[2]):
            sys.exit(0)
    except OSError:
        pass
    time.sleep(0.2)
sys.exit(1)
PY
cat >&2 <<EOF
cluster ready: $count analyzers behind HAProxy
  calls:       ws://$CALLS_BIND/twilio  ws://$CALLS_BIND/fork  audiosocket $AUDIOSOCKET_BIND
  dashboard:   http://127.0.0.1:$DASHBOARD_PORT/  (every call, through $broker)
  feed it:     $python -m tools.loadgen twilio SPEECH.wav --target ws://$CALLS_BIND/twilio --calls 20 --seconds 30
  logs, pids:  $CLUSTER_DIR   (Ctrl-C stops everything)
EOF
# An analyzer may exit (drained for an upgrade, or died): the service goes on with the others, as
# HAProxy's health checks see. Without the broker, HAProxy or the supervisor it is not a service.
infrastructure=(broker haproxy supervisor)
while true; do
  for name in "${infrastructure[@]}"; do
    if ! kill -0 "$(cat "$CLUSTER_DIR/$name.pid")" 2>/dev/null; then
      echo "local-cluster: the $name exited (log: $CLUSTER_DIR/$name.log); stopping the rest" >&2
      exit 1
    fi
  done
  sleep 1
done
