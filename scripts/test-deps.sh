#!/usr/bin/env bash
# Installs the real clients the black-box tests drive and a fresh Debian/Ubuntu machine may lack:
# curl (HTTP/1.1, HTTP/2), openssl (s_client), h2load, Chromium (headless, for the browser
# test, with NSS's certutil), dnsmasq (a DNS server for discovery), Prometheus (promtool and a server), and Python's h2 and grpcio (HTTP/2 and gRPC clients and servers). Idempotent; needs
# root or sudo only when something is missing.
set -euo pipefail
missing=()
command -v curl >/dev/null 2>&1 || missing+=(curl)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
command -v h2load >/dev/null 2>&1 || missing+=(nghttp2-client)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
# certutil: the browser test trusts its test CA in a throwaway NSS database.
command -v certutil >/dev/null 2>&1 || missing+=(libnss3-tools)
# dnsmasq (the binary only, no system service): the DNS server of the discovery tests.
command -v dnsmasq >/dev/null 2>&1 || missing+=(dnsmasq-base)
# Prometheus and promtool: the alert rules are checked, and a real Prometheus scrapes tether.
command -v prometheus >/dev/null 2>&1 || missing+=(prometheus)
python=${TETHER_TEST_PYTHON:-python3}
command -v "$python" >/dev/null 2>&1 || missing+=(python3)
if [ ${#missing[@]} -gt 0 ]; then
  echo "tether: installing test clients: ${missing[*]}" >&2
  if [ "$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo"; fi
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
if ! "$python" -c 'import h2, grpc' >/dev/null 2>&1; then
  echo "tether: installing Python test clients: h2 grpcio" >&2
  "$python" -m pip --version >/dev/null 2>&1 || {
    if [ "$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo"; fi
    $SUDO apt-get install -y -qq python3-pip >/dev/null
  }
  "$python" -m pip install -q h2 grpcio 2>/dev/null ||
    "$python" -m pip install -q --break-system-packages h2 grpcio
fi
