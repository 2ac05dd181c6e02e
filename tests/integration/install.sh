#!/usr/bin/env bash
# integration.install: `cmake --install` into a scratch prefix, then, against
# the installed Brigade only:
#  - build programs with find_package(Brigade) (Brigade::brigade and
#    Brigade::brigade_agent) and with pkg-config (brigade, brigade_agent);
#  - check that the core library and a core-only program pull neither
#    libcurl nor jansson (readelf -d, ldd), and that an agent program does
#    link the agent library;
#  - run them all;
#  - check that the shared libraries export only brg_ symbols.
# Usage: install.sh <build-dir> <source-dir> [extra C flags...]
set -euo pipefail
build=$1
src=$2
shift 2
prefix=$(mktemp -d)
trap 'rm -rf "$prefix"' EXIT
cmake --install "$build" --prefix "$prefix" >/dev/null
libdir=$(dirname "$(find "$prefix" -name brigade.pc | head -n 1)")/..
libdir=$(cd "$libdir" && pwd)
export PKG_CONFIG_PATH="$libdir/pkgconfig"
test -f "$prefix/include/brigade.h" || { echo "brigade.h not installed"; exit 1; }
test -f "$libdir/cmake/Brigade/BrigadeConfig.cmake" || { echo "BrigadeConfig.cmake not installed"; exit 1; }
test -f "$libdir/cmake/Brigade/BrigadeConfigVersion.cmake" || { echo "version file not installed"; exit 1; }

# No HTTP or JSON library below a core program: not needed, not loaded.
no_agent_deps() { # <what> <elf>
    if readelf -d "$2" | grep NEEDED | grep -E 'libcurl|libjansson|libbrigade_agent'; then
        echo "$1 needs the agent libraries (readelf -d)"; exit 1
    fi
    if ldd "$2" | grep -E 'libcurl|libjansson|libbrigade_agent'; then
        echo "$1 loads the agent libraries (ldd)"; exit 1
    fi
}
needs() { # <what> <elf> <library>
    readelf -d "$2" | grep NEEDED | grep -q "$3" || { echo "$1 does not link $3"; exit 1; }
}
no_agent_deps libbrigade.so "$libdir/libbrigade.so"
needs libbrigade_agent.so "$libdir/libbrigade_agent.so" libbrigade.so
needs libbrigade_agent.so "$libdir/libbrigade_agent.so" libcurl

# pkg-config: the smallest program (examples/pingpong), and both apps.
cflags=(-std=c11 -Wall -Wextra -Werror "$@")
cc "${cflags[@]}" -o "$prefix/pingpong" "$src/examples/pingpong/main.c" \
    $(pkg-config --cflags --libs brigade) -Wl,-rpath,"$libdir"
cc "${cflags[@]}" -o "$prefix/core_pc" "$src/tests/integration/core_app.c" \
    $(pkg-config --cflags --libs brigade) -Wl,-rpath,"$libdir"
cc "${cflags[@]}" -o "$prefix/agent_pc" "$src/tests/integration/agent_app.c" \
    $(pkg-config --cflags --libs brigade_agent) -Wl,-rpath,"$libdir"
no_agent_deps "pingpong (pkg-config)" "$prefix/pingpong"
no_agent_deps "core_app (pkg-config)" "$prefix/core_pc"
needs "agent_app (pkg-config)" "$prefix/agent_pc" libbrigade_agent
"$prefix/pingpong" 1000
"$prefix/core_pc"
"$prefix/agent_pc"

# find_package(Brigade), from a project of its own.
cmake -S "$src/tests/integration/find_package" -B "$prefix/consumer" \
    -DCMAKE_PREFIX_PATH="$prefix" -DCMAKE_C_FLAGS="$*" -DCMAKE_EXE_LINKER_FLAGS="$*" >/dev/null
cmake --build "$prefix/consumer" >/dev/null
no_agent_deps "core_app (find_package)" "$prefix/consumer/core_app"
needs "agent_app (find_package)" "$prefix/consumer/agent_app" libbrigade_agent
"$prefix/consumer/core_app"
"$prefix/consumer/agent_app"

# Hidden visibility: every exported function or object is part of the API.
# The one exception: a TSan build exports __tsan_default_suppressions, the
# hook through which TSan reads the libzmq suppressions (transport/zmq_io.c).
for lib in libbrigade.so libbrigade_agent.so; do
    leaks=$(nm -D --defined-only "$libdir/$lib" | awk '$2 ~ /^[TDBR]$/ {print $3}' \
            | grep -v '^brg_' \
            | grep -v -E '^(_init|_fini|_edata|_end|__bss_start|__tsan_default_suppressions)$' || true)
    if [ -n "$leaks" ]; then
        echo "$lib: non-API symbols exported:"; echo "$leaks"; exit 1
    fi
done
echo "install: ok"
