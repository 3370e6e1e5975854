#!/usr/bin/env bash
# Verifies systemd/tether.service with systemd-analyze (Debian package `systemd`). The unit names
# /usr/local/bin/tether; the check uses a copy pointing at the built binary. systemd-analyze
# exits 0 on unknown keys and only prints a warning, so any output is a failure.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v systemd-analyze >/dev/null 2>&1; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq systemd >/dev/null
fi
bin="${1:-$PWD/target/debug/tether}"
[ -x "$bin" ] || { echo "no tether binary at $bin" >&2; exit 1; }
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
sed "s#/usr/local/bin/tether#$bin#g" systemd/tether.service > "$dir/tether.service"
out=$(systemd-analyze verify "$dir/tether.service" 2>&1) || { echo "$out" >&2; exit 1; }
if [ -n "$out" ]; then
  echo "systemd-analyze verify systemd/tether.service:" >&2
  echo "$out" >&2
  exit 1
fi
echo "systemd/tether.service: verified"
