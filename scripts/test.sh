#!/usr/bin/env bash
# The whole test suite, as CI runs it: install what is missing, then format, lint, types,
# the sans-I/O import contract, and every test (unit, functional, cluster). Extra arguments
# go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
export PATH="$PWD/.venv/bin:$PATH"

echo "== ruff format --check"; ruff format --check --quiet .
echo "== ruff check"; ruff check --quiet .
echo "== mypy (strict)"; mypy --no-error-summary
echo "== import contracts"; lint-imports --no-cache >/tmp/fnlb-lint-imports.log || {
  cat /tmp/fnlb-lint-imports.log; exit 1; }
echo "== pytest"
set +e
python -m pytest "$@"
rc=$?
set -e
if [ "$rc" = 5 ]; then
  echo "pytest collected no tests: that is a failure here" >&2
  exit 1
fi
exit "$rc"
