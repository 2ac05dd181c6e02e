#!/usr/bin/env bash
# Builds Brigade and runs the whole test suite with CTest; the last line is
# CTest's summary. BRG_SANITIZER=address,undefined or thread runs the suite
# in a sanitizer build (own build directory, longer Check timeouts).
# CK_EXCLUDE_TAGS=stress skips the stress tier for a quick local run.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh >/dev/null
dir=$(scripts/build.sh "$@" | tail -n 1)
case "${BRG_SANITIZER:-none}" in
    thread) export CK_TIMEOUT_MULTIPLIER=${CK_TIMEOUT_MULTIPLIER:-10}
            export TSAN_OPTIONS=${TSAN_OPTIONS:-halt_on_error=1 second_deadlock_stack=1} ;;
    address,undefined) export CK_TIMEOUT_MULTIPLIER=${CK_TIMEOUT_MULTIPLIER:-5}
            export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
            export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1} ;;
esac
ctest --test-dir "$dir" --output-on-failure --timeout 1800
