#!/usr/bin/env bash
# Request smuggling, tried as an attacker would, against the release build of tether, with the
# harness in ../shared/tools/smuggle (public tools and ~760 raw cases, a recording tap between
# tether and a strict Node backend, replays to nginx, gunicorn and Node):
#
#   scripts/smuggle.sh            everything (~4 min): the raw cases, PortSwigger's permutations,
#                                 AWS desync-guardian's suite, defparam/smuggler, HTTPWookiee,
#                                 HTTP Garden, h2csmuggler
#   scripts/smuggle.sh --cases    the raw cases, permutations and desync-guardian suite (~1 min;
#                                 CI runs this, with SMUGGLE_PROFILE=debug: the build it has)
#
# Then scripts/smuggle-verdict.py judges every flag the harness raised: explained (HTTP requires
# it; docs/security.md) or a failure. Output: target/smuggle/ (summary.txt, cases.md, logs).
# defparam/smuggler needs its lib/ folder, missing from the harness's copy: point SMUGGLER_SRC at
# a checkout of github.com/defparam/smuggler to run it. Everything listens on 127.0.0.1 (ports
# 18070-18700, as the harness's README lists); every step is bounded in time.
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:-all}
profile=${SMUGGLE_PROFILE:-release}
harness_src=${SMUGGLE_HARNESS:-../shared/tools/smuggle}
out=$PWD/target/smuggle
[ -d "$harness_src" ] || { echo "no smuggling harness at $harness_src" >&2; exit 1; }

scripts/deps.sh
if [ "$(id -u)" -eq 0 ]; then sudo=""; else sudo="sudo"; fi
missing=()
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || missing+=(nginx)
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v curl >/dev/null 2>&1 || missing+=(curl)
if [ ${#missing[@]} -gt 0 ]; then
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi
export PATH=$PATH:/usr/sbin
# The HTTP Garden's parser (the harness's reference for what reached the backend) needs
# Python >= 3.12; pyenv has one on these machines.
py12=${PY12:-$(ls -d "$HOME"/.pyenv/versions/3.1[2-9]*/bin/python3 2>/dev/null | head -1)}
[ -n "$py12" ] || { python3.12 -c 1 2>/dev/null && py12=python3.12; } || true
[ -n "$py12" ] || { echo "need Python >= 3.12 (set PY12)" >&2; exit 1; }
export PY12=$py12
python3 -m pip install -q --disable-pip-version-check gunicorn hypercorn h2 hpack pyyaml termcolor six >/dev/null 2>&1
"$py12" -m pip install -q --disable-pip-version-check h2 hpack pyyaml >/dev/null 2>&1

if [ "$profile" = release ]; then
  cargo build --release --locked --bin tether --example plain_lb
else
  cargo build --locked --bin tether --example plain_lb
fi
bin=$PWD/target/$profile

# A writable copy of the harness (the shared one is read-only), with smuggler's lib/ if given.
rm -rf "$out"
mkdir -p "$out"
cp -r "$harness_src" "$out/harness"
chmod -R u+w "$out/harness"
if [ -n "${SMUGGLER_SRC:-}" ]; then
  cp -r "$SMUGGLER_SRC/lib" "$out/harness/tools/smuggler/"
fi
harness=$out/harness
# The case runner gives tether 0.6 s for its first answer (the session token every case carries);
# a cold Node backend behind it took 0.83 s once, and longer in a debug build on a slow machine.
# So every start of tether by the harness (start_tether.sh, also its restart after a crash) is
# followed by requests through it until one answers with a session cookie, or tether's log.
mv "$harness/bin/start_tether.sh" "$harness/bin/start_tether.orig.sh"
cat > "$harness/bin/start_tether.sh" <<'WARM'
#!/bin/bash
"$(dirname "$0")/start_tether.orig.sh" "$@" || exit 1
for _ in $(seq 1 50); do
  curl -s -m 5 -o /dev/null -D - 'http://127.0.0.1:18080/?c=warm-up' | grep -qi '^set-cookie: _srv_id=' && exit 0
  sleep 0.2
done
echo "tether never answered on 127.0.0.1:18080 with a session cookie; its log:" >&2
tail -40 "${OUT:?}/tether.log" >&2
exit 1
WARM
chmod +x "$harness/bin/start_tether.sh"
export SMUGGLE_OUT=$out/run OUT=$out/run PYTHONDONTWRITEBYTECODE=1
# 100 Garden mutations finish within the harness's 90 s bound for that stage.
export GARDEN_ITER=${GARDEN_ITER:-100}

if [ "$mode" != --cases ]; then
  timeout 900 "$harness/run.sh" "$bin/tether"
  exec scripts/smuggle-verdict.py "$OUT"
fi

# The raw cases only: the services they need, then the case runner.
mkdir -p "$OUT/conf" "$OUT/nginx"
for f in "$harness"/conf/*; do sed "s#@OUT@#$OUT#g" "$f" > "$OUT/conf/$(basename "$f")"; done
: > "$OUT/pids"
cleanup() {
  [ -f "$OUT/tether.run.pid" ] && kill -INT "$(cat "$OUT/tether.run.pid")" 2>/dev/null
  while read -r p; do kill "$p" 2>/dev/null || true; done < "$OUT/pids"
}
trap cleanup EXIT
bg() { local log=$1; shift; "$@" >"$log" 2>&1 & echo $! >> "$OUT/pids"; }
wait_port() {
  for _ in $(seq 1 100); do (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0; sleep 0.1; done
  echo "port $1 never opened" >&2; return 1
}
bg "$OUT/origin.out" node "$harness/bin/origin.js" 18200 "$OUT/origin.log"
bg "$OUT/tap.out" python3 "$harness/bin/tap.py" "$OUT/tap.log" 18101:18200 18102:18200 18103:18400 18104:18282 18105:18383 18106:18700
bg "$OUT/nginx.out" nginx -c "$OUT/conf/nginx.conf" -p "$OUT/nginx"
bg "$OUT/gunicorn.out" python3 -m gunicorn --chdir "$harness/bin" -b 127.0.0.1:18600 -k gthread --threads 4 --keep-alive 5 wsgiapp:app
bg "$OUT/lazy.out" python3 "$harness/bin/lazy_backend.py" 18700 "$OUT/lazy.log"
for p in 18200 18101 18500 18600 18700; do wait_port $p; done
"$harness/bin/start_tether.sh" "$bin/tether"
bg "$OUT/plain_lb.log" env PLAIN_LB_LISTEN=127.0.0.1:18070 PLAIN_LB_BACKENDS=127.0.0.1:18101 RUST_LOG=warn \
  "$bin/examples/plain_lb" -c "$OUT/conf/plain.yaml"
wait_port 18070
export TETHER_PIDFILE=$OUT/tether.run.pid TETHER_RESTART="$harness/bin/start_tether.sh $bin/tether"
export PLAIN_LB_PORT=18070
timeout 300 "$py12" "$harness/bin/run_cases.py" | tee "$OUT/summary.txt"
scripts/smuggle-verdict.py "$OUT"
