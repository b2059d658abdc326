#!/usr/bin/env bash
# The README's first command: install what is missing, then start emulated Fn nodes with
# fnlb in front on loopback, send two bursts of calls, print where they went, and stay up.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh --demo
exec .venv/bin/fnlb demo "$@"
