#!/usr/bin/env bash
# Installs what building tether needs and a fresh Debian/Ubuntu machine lacks: cmake (for
# Pingora's zlib-ng) and a C compiler. Idempotent; needs root or sudo only when installing.
set -euo pipefail
missing=()
command -v cmake >/dev/null 2>&1 || missing+=(cmake)
# The package itself, not just `cc`: the Dockerfile's build stage names it (check-dockerfile.py).
dpkg -s build-essential >/dev/null 2>&1 || missing+=(build-essential)
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
echo "tether: installing ${missing[*]}" >&2
if [ "$(id -u)" -eq 0 ]; then
  SUDO=""
elif command -v sudo >/dev/null 2>&1; then
  SUDO="sudo"
else
  echo "tether: need root or sudo to install ${missing[*]}" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
