#!/usr/bin/env bash
# Fails if any C file differs from the committed .clang-format style.
set -euo pipefail
cd "$(dirname "$0")/.."
files=$(git ls-files '*.c' '*.h')
bad=0
for f in $files; do
    if ! clang-format --style=file "$f" | cmp -s - "$f"; then
        echo "check-format: $f is not formatted (clang-format -i $f)"
        bad=1
    fi
done
[ $bad -eq 0 ] && echo "check-format: ok"
exit $bad
