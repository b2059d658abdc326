#!/usr/bin/env bash
# Install what fnlb needs on a fresh Debian machine (Python 3.11, root), idempotently, into a
# virtualenv in .venv:
#   scripts/bootstrap.sh --demo   only what `fnlb demo` needs: fnlb and its runtime
#                                 dependencies at the versions in constraints.txt (no Debian
#                                 packages). scripts/demo.sh, the README's first command.
#   scripts/bootstrap.sh          everything the tests and benchmarks need too: the Debian
#                                 packages for the network tests (iproute2, nftables), the
#                                 peers we measure against (haproxy, wrk, serf, nginx), kubectl
#                                 (renders deploy/kubernetes), and the dev tools.
set -euo pipefail
cd "$(dirname "$0")/.."

mode=dev
if [ "${1:-}" = "--demo" ]; then
  mode=demo
fi

if [ "$mode" = dev ]; then
  need_apt=()
  # promtool (Debian: prometheus) lints /metrics; chromium loads /1/lb/dash headless
  # (tests/observe); valgrind counts the fast plane's instructions per call
  # (bench/fast_plane_cpu --instructions); gcc and Python's headers compile the call path
  # with mypyc (setup.py, docs/proxy.md "Compiled modules"), the build the tests run
  for cmd_pkg in ip:iproute2 nft:nftables tc:iproute2 haproxy:haproxy wrk:wrk serf:serf \
      nginx:nginx-light kubectl:kubernetes-client promtool:prometheus chromium:chromium \
      valgrind:valgrind gcc:gcc; do
    cmd=${cmd_pkg%%:*}; pkg=${cmd_pkg##*:}
    command -v "$cmd" >/dev/null 2>&1 || need_apt+=("$pkg")
  done
  include=$("${PYTHON:-python3}" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
  [ -f "$include/Python.h" ] || need_apt+=(python3-dev)
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
fi

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
# One stamp per mode: a venv set up for the demo still gets the dev tools when tests run.
stamp=.venv/.fnlb-installed-$mode
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ constraints.txt -nt "$stamp" ]; then
  # PIP_CONSTRAINT (not -c) reaches pip's isolated build environment too: the mypy that
  # compiles the call path (setup.py) is the pinned one
  pip=(env PIP_CONSTRAINT=constraints.txt .venv/bin/python -m pip install -q
    --disable-pip-version-check)
  "${pip[@]}" --upgrade pip >/dev/null
  if [ "$mode" = demo ]; then
    "${pip[@]}" -e .
  else
    "${pip[@]}" -e '.[dev]'
  fi
  touch "$stamp"
fi
# pip install -e . compiled the call path with mypyc where a C compiler exists (setup.py); a
# source changed since (a pull, a merge, an edit) makes those modules stale, and fnlb then
# runs the sources instead (fnlb/compiled.py). Compile again so the tests and benchmarks run
# what an install would (1-2 min); also when an install without compiling (FNLB_COMPILE=0)
# left pure Python where gcc exists.
build=$(.venv/bin/python -c \
  'import fnlb.compiled as c; print({c.STALE: "stale", c.PURE: "pure"}.get(c.BUILD, "ok"))' \
  2>/dev/null || true)
if [ "$build" = stale ] || { [ "$build" = pure ] && [ "${FNLB_COMPILE:-1}" != 0 ] \
    && command -v gcc >/dev/null 2>&1; }; then
  echo "bootstrap: compiling the call path again (it was $build; gcc is here)"
  PIP_CONSTRAINT=constraints.txt .venv/bin/python -m pip install -q --disable-pip-version-check \
    --no-deps -e .
fi
