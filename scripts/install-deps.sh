#!/usr/bin/env bash
# Installs what turf needs and is missing: make, system libraries, tmux (terminal tests),
# libtorrent's Python binding (DHT interop tests), iproute2 + iptables + conntrack (the NAT lab).
# Idempotent and quiet when everything is present. Works without make (a fresh Debian 12 has none): run it first as
# ./scripts/install-deps.sh. As root it calls apt-get directly; otherwise through sudo.
set -euo pipefail
pkgs=(make libsodium-dev libncursesw5-dev pkg-config tmux python3-libtorrent iproute2 iptables conntrack)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -eq 0 ]; then
    as_root=()
  elif command -v sudo >/dev/null 2>&1; then
    as_root=(sudo)
  else
    echo "missing packages: ${missing[*]}" >&2
    echo "installing them needs root, and sudo is not installed: run as root" >&2
    echo "  apt-get install -y ${missing[*]}" >&2
    echo "(or install sudo), then try again" >&2
    exit 1
  fi
  echo "installing: ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  ${as_root[@]+"${as_root[@]}"} apt-get update -qq >/dev/null || true
  ${as_root[@]+"${as_root[@]}"} apt-get install -y -qq "${missing[@]}" >/dev/null
fi
if ! command -v swift >/dev/null 2>&1; then
  echo "swift is not on PATH: install Swift 6.1 or newer from https://swift.org/install" >&2
  exit 1
fi
