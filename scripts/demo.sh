#!/usr/bin/env bash
# Quick start: builds tether, starts two demo backends (200 "Hello, world" on :8081, 503
# "Service unavailable" on :8082) and tether in front of them on 127.0.0.1:8000, admin on :9100.
# `scripts/demo.sh stop` stops them. Logs and pids are in target/demo/.
set -euo pipefail
cd "$(dirname "$0")/.."
run=target/demo
stop() {
  # tether: SIGINT (its fast shutdown). The backends, started in the background by a
  # non-interactive shell, ignore SIGINT: SIGTERM. Whatever still runs after 2 s: SIGKILL.
  for p in "$run"/*.pid; do
    [ -e "$p" ] || continue
    pid=$(cat "$p")
    first=TERM
    [ "$(basename "$p")" = tether.pid ] && first=INT
    for sig in $first KILL; do
      kill -"$sig" "$pid" 2>/dev/null || break
      for _ in $(seq 20); do kill -0 "$pid" 2>/dev/null || break 2; sleep 0.1; done
    done
    rm -f "$p"
  done
}
if [ "${1:-}" = "stop" ]; then
  stop
  echo "demo stopped"
  exit 0
fi
scripts/deps.sh
cargo build --release --locked --bin tether --example demo_backend
mkdir -p "$run"
stop
start() { # name, command...
  local name=$1; shift
  "$@" >"$run/$name.log" 2>&1 &
  echo $! >"$run/$name.pid"
}
start hello target/release/examples/demo_backend 127.0.0.1:8081 200 "Hello, world"
start unavailable target/release/examples/demo_backend 127.0.0.1:8082 503 "Service unavailable"
start tether target/release/tether -c conf/demo.yaml
for _ in $(seq 100); do
  if curl -fs http://127.0.0.1:9100/healthz >/dev/null 2>&1 && (exec 3<>/dev/tcp/127.0.0.1/8000) 2>/dev/null; then
    break
  fi
  sleep 0.1
done
if ! kill -0 "$(cat "$run/tether.pid")" 2>/dev/null; then
  echo "tether did not start:" >&2
  cat "$run/tether.log" >&2
  exit 1
fi
cat <<'TXT'
tether is running on 127.0.0.1:8000 (admin on 127.0.0.1:9100). Try:

  curl -i http://127.0.0.1:8000/                      # no cookie: answers alternate, each with a new Set-Cookie
  curl -i http://127.0.0.1:8000/                      #   (200 Hello, world / 503 Service unavailable)
  curl -c /tmp/jar -b /tmp/jar http://127.0.0.1:8000/ # with the cookie jar: every answer from one backend
  curl -c /tmp/jar -b /tmp/jar http://127.0.0.1:8000/
  curl http://127.0.0.1:9100/status                   # backends, health
  curl http://127.0.0.1:9100/metrics                  # Prometheus metrics

Access log: target/demo/tether.log.  Stop everything: scripts/demo.sh stop
TXT
