#!/usr/bin/env bash
# The quick start: install the dependencies, build, run the main demo.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
dir=$(scripts/build.sh | tail -n 1)
echo "== running examples/assistant on its sample documents =="
"$dir/examples/assistant/assistant"
