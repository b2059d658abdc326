#!/usr/bin/env bash
# Install everything fnlb, its tests and its benchmarks need on a fresh Debian machine
# (Python 3.11, root), idempotently: Debian packages for the network tests and the peers we
# measure against, and a virtualenv in .venv with fnlb and its dev tools.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
# promtool (Debian: prometheus) lints /metrics; chromium loads /1/lb/dash headless (tests/observe)
for cmd_pkg in ip:iproute2 nft:nftables tc:iproute2 haproxy:haproxy wrk:wrk serf:serf nginx:nginx-light \
  promtool:prometheus chromium:chromium; do
  cmd=${cmd_pkg%%:*}; pkg=${cmd_pkg##*:}
  command -v "$cmd" >/dev/null 2>&1 || need_apt+=("$pkg")
done
if ((${#need_apt[@]})); then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "bootstrap: installing Debian packages: ${need_apt[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
  else
    echo "bootstrap: not root or no apt-get; tests needing ${need_apt[*]} will be skipped" >&2
  fi
fi

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
stamp=.venv/.fnlb-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  .venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip >/dev/null
  .venv/bin/python -m pip install -q --disable-pip-version-check -e '.[dev]'
  touch "$stamp"
fi
