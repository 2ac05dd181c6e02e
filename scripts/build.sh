#!/usr/bin/env bash
# Configures and builds Brigade. Usage: scripts/build.sh [extra cmake args]
# BRG_SANITIZER=address,undefined or thread selects a sanitizer build in its
# own directory (build-asan, build-tsan); BRG_BUILD_DIR overrides the directory.
set -euo pipefail
cd "$(dirname "$0")/.."
san=${BRG_SANITIZER:-none}
case "$san" in
    none) dir=build ;;
    address,undefined) dir=build-asan ;;
    thread) dir=build-tsan ;;
    *) echo "build: BRG_SANITIZER must be none, address,undefined or thread" >&2; exit 2 ;;
esac
dir=${BRG_BUILD_DIR:-$dir}
cmake -S . -B "$dir" -DBRG_SANITIZER="$san" "$@" >/dev/null
cmake --build "$dir" -j"$(nproc)"
echo "$dir"
