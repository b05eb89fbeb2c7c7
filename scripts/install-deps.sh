#!/usr/bin/env bash
# Installs what turf needs and is missing: system libraries, tmux (terminal tests), libtorrent's
# Python binding (DHT interop tests), iproute2 + iptables (NAT tests). Idempotent and quiet when
# everything is present.
set -euo pipefail
pkgs=(libsodium-dev libncursesw5-dev pkg-config tmux python3-libtorrent iproute2 iptables)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}" >&2
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq >/dev/null || true
  $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi
if ! command -v swift >/dev/null 2>&1; then
  echo "swift is not on PATH: install Swift 6.1 or newer from https://swift.org/install" >&2
  exit 1
fi
