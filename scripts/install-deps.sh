#!/usr/bin/env bash
# Installs Brigade's build and test dependencies from Debian's packages.
# Runs apt-get directly as root, through sudo otherwise. --list prints the packages.
set -euo pipefail
PKGS=(build-essential cmake pkg-config libzmq3-dev libmsgpack-dev uuid-dev check libsubunit-dev
      libjansson-dev libcurl4-openssl-dev clang-format python3 python3-zmq python3-msgpack)
if [ "${1:-}" = "--list" ]; then
    echo "${PKGS[@]}" # for .ci/run, which installs them itself
    exit 0
fi
missing=()
for p in "${PKGS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
    echo "install-deps: all dependencies present"
    exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || { echo "install-deps: run as root or install sudo" >&2; exit 1; }
    SUDO=sudo
fi
echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq "${missing[@]}"
