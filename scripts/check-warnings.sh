#!/usr/bin/env bash
# The warnings gate (run by `make test`): fails if a build log holds a compiler warning that points
# into this repository's Sources/ or Tests/. Warnings from dependencies (.build/checkouts) and the
# pkg-config "prohibited flag(s)" notes of the system-library targets carry no such path and are
# not ours. An incremental build prints warnings only for the files it recompiles; a fresh clone
# (CI) compiles everything, so there the gate sees every warning.
#
# Usage: scripts/check-warnings.sh BUILD_LOG
set -euo pipefail
log="$1"
cd "$(dirname "$0")/.."
found=""
for root in "$(pwd -L)" "$(pwd -P)"; do
    found+=$(awk -v r="$root/" '(index($0, r "Sources/") == 1 || index($0, r "Tests/") == 1) && $0 ~ /:[0-9]+:[0-9]+: warning: /' "$log")
    found+=$'\n'
done
found=$(printf '%s' "$found" | sed '/^$/d' | sort -u)
if [ -n "$found" ]; then
    printf '%s\n' "$found" >&2
    echo "error: the build printed $(printf '%s\n' "$found" | wc -l) warning(s) in Sources/ or Tests/ (above); fix them" >&2
    exit 1
fi
