#!/usr/bin/env bash
# run.sh - the document assistant as a cluster, start to finish: three
# specialist nodes started by brigade-node from analyser.json,
# summariser.json and checker.json (with the specialists plugin), then the
# coordinator, which sends every document to them over tcp with CURVE. With
# --kill NAME it kills that specialist's node with kill -9 once the
# coordinator has reported --kill-after documents; the run must still report
# every document (the lost parts retried, or marked missing).
#
# usage: run.sh --node BRIGADE-NODE --plugin SPECIALISTS.so --coordinator COORDINATOR
#               [--documents N] [--deadline MS] [--kill analyser|summariser|checker]
#               [--kill-after K]
# The key directory is $BRG_KEY_DIR (created with a key pair if missing).
# Everything it starts is stopped on exit; the exit status is 0 when every
# document was reported (and, without --kill, every part of every one).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
node= plugin= coordinator= documents=0 deadline=2000 kill_name= kill_after=3

usage() { # usage STATUS: to stdout for 0, else to stderr
    sed -n 's/^# \{0,1\}//; /^usage:/,/^The key/p' "$0" | sed '$d' >&$(($1 ? 2 : 1))
    exit "$1"
}
while [ $# -gt 0 ]; do
    case "$1" in
    --node) node=$2; shift 2 ;;
    --plugin) plugin=$2; shift 2 ;;
    --coordinator) coordinator=$2; shift 2 ;;
    --documents) documents=$2; shift 2 ;;
    --deadline) deadline=$2; shift 2 ;;
    --kill) kill_name=$2; shift 2 ;;
    --kill-after) kill_after=$2; shift 2 ;;
    -h | --help) usage 0 ;;
    *) echo "run.sh: bad argument '$1'" >&2; usage 2 ;;
    esac
done
[ -x "$node" ] && [ -f "$plugin" ] && [ -x "$coordinator" ] || usage 2
case "$kill_name" in "" | analyser | summariser | checker) ;; *) usage 2 ;; esac
[[ "$documents" =~ ^[0-9]+$ && "$kill_after" =~ ^[0-9]+$ && "$deadline" =~ ^[0-9]+$ ]] || usage 2

tmp=$(mktemp -d "${TMPDIR:-/tmp}/brg-cluster-XXXXXX")
declare -A pid=()
coord_pid=
status=1

cleanup() {
    for p in $coord_pid "${pid[@]}"; do
        kill -TERM "$p" 2>/dev/null || true
    done
    for p in $coord_pid "${pid[@]}"; do
        # A node stops within its shutdown time; then it is killed.
        for _ in $(seq 1 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$p" 2>/dev/null || true
        wait "$p" 2>/dev/null || true
    done
    if [ "$status" -ne 0 ]; then
        for f in "$tmp"/*.log; do
            [ -f "$f" ] && { echo "--- $f (last lines)"; tail -n 30 "$f"; }
        done
    fi
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

fail() {
    echo "run.sh: FAILED: $*" >&2
    exit 1
}

# The specialist nodes: tcp on a free port of 127.0.0.1 (port 0), CURVE with
# the key pair of $BRG_KEY_DIR; each dies with this script (--parent-pid).
names=(analyser summariser checker)
for name in "${names[@]}"; do
    sed "s|@PLUGIN@|$plugin|" "$here/$name.json" >"$tmp/$name.json"
    "$node" --config "$tmp/$name.json" --ready-file "$tmp/$name.ready" --parent-pid $$ \
        >"$tmp/$name.out" 2>"$tmp/$name.log" &
    pid[$name]=$!
done
declare -A endpoint=()
for name in "${names[@]}"; do
    for _ in $(seq 1 1200); do
        [ -f "$tmp/$name.ready" ] && break
        kill -0 "${pid[$name]}" 2>/dev/null || fail "the $name node ended before it was ready"
        sleep 0.1
    done
    [ -f "$tmp/$name.ready" ] || fail "the $name node is not ready after 120 s"
    endpoint[$name]=$(sed -n 's/^endpoint //p' "$tmp/$name.ready")
    echo "run.sh: $name node ready: pid ${pid[$name]}, ${endpoint[$name]}"
done

args=(--analyser "${endpoint[analyser]}" --summariser "${endpoint[summariser]}"
    --checker "${endpoint[checker]}" --deadline="$deadline")
[ "$documents" -gt 0 ] && args+=(--documents="$documents")
"$coordinator" "${args[@]}" >"$tmp/coordinator.out" 2>"$tmp/coordinator.log" &
coord_pid=$!

killed=
if [ -n "$kill_name" ]; then
    # Wait for the coordinator's progress, then kill -9 the node mid-run.
    for _ in $(seq 1 1200); do
        [ "$(grep -c '^\[' "$tmp/coordinator.out" || true)" -ge "$kill_after" ] && break
        kill -0 "$coord_pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -0 "$coord_pid" 2>/dev/null || fail "the coordinator ended before $kill_after reports"
    kill -KILL "${pid[$kill_name]}"
    rc=0
    wait "${pid[$kill_name]}" || rc=$?
    [ "$rc" -eq 137 ] || fail "the $kill_name node did not die of SIGKILL (status $rc)"
    unset "pid[$kill_name]"
    killed=$kill_name
    echo "run.sh: killed the $kill_name node (kill -9) after $kill_after reports"
fi

rc=0
wait "$coord_pid" || rc=$?
coord_pid=
cat "$tmp/coordinator.out"
[ "$rc" -eq 0 ] || fail "the coordinator exited with status $rc"

# Every document reported, once, and the summary agrees.
summary=$(grep -E '^[0-9]+ documents reported: ' "$tmp/coordinator.out") ||
    fail "no summary line"
total=${summary%% *}
lines=$(grep -cE '^\[[0-9]+/'"$total"'\] ' "$tmp/coordinator.out" || true)
[ "$lines" -eq "$total" ] || fail "$lines report lines for $total documents"
[ "$documents" -eq 0 ] || [ "$total" -eq "$documents" ] || fail "$total documents, not $documents"
if [ -z "$killed" ]; then
    echo "$summary" | grep -q ": $total complete, 0 with missing parts" ||
        fail "parts missing without a kill: $summary"
fi

# The surviving nodes stop in order (SIGTERM: exit status 0).
for name in "${!pid[@]}"; do
    kill -TERM "${pid[$name]}"
    rc=0
    wait "${pid[$name]}" || rc=$?
    unset "pid[$name]"
    [ "$rc" -eq 0 ] || fail "the $name node exited with status $rc on SIGTERM"
done
status=0
echo "run.sh: ok: $summary${killed:+ (the $killed node was killed with kill -9)}"
