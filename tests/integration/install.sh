#!/usr/bin/env bash
# integration.install: `cmake --install` into a scratch prefix, then build a
# program against the installed Brigade with pkg-config alone and run it; and
# check that the shared library exports only brg_ symbols.
# Usage: install.sh <build-dir> <source-dir> [extra C flags...]
set -euo pipefail
build=$1
src=$2
shift 2
prefix=$(mktemp -d)
trap 'rm -rf "$prefix"' EXIT
cmake --install "$build" --prefix "$prefix" >/dev/null
libdir=$(dirname "$(find "$prefix" -name brigade.pc | head -n 1)")/..
export PKG_CONFIG_PATH="$libdir/pkgconfig"
test -f "$prefix/include/brigade.h" || { echo "brigade.h not installed"; exit 1; }
cc -std=c11 -Wall -Wextra -Werror "$@" -o "$prefix/pingpong" "$src/examples/pingpong/main.c" \
    $(pkg-config --cflags --libs brigade) -Wl,-rpath,"$libdir"
"$prefix/pingpong" 1000
# Hidden visibility: every exported function or object is part of the API.
# The one exception: a TSan build exports __tsan_default_suppressions, the
# hook through which TSan reads the libzmq suppressions (transport/zmq_io.c).
leaks=$(nm -D --defined-only "$libdir"/libbrigade.so | awk '$2 ~ /^[TDBR]$/ {print $3}' \
        | grep -v '^brg_' \
        | grep -v -E '^(_init|_fini|_edata|_end|__bss_start|__tsan_default_suppressions)$' || true)
if [ -n "$leaks" ]; then
    echo "non-API symbols exported:"; echo "$leaks"; exit 1
fi
echo "install: ok"
