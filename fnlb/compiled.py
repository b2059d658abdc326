"""Which build of the call path runs: the modules mypyc compiled, or their Python sources.

setup.py compiles the proxied call's modules with mypyc when it can and writes
`fnlb/compiled.json` beside them: each compiled module and the SHA-256 of the source it was
compiled from. Python imports `fnlb/proxy/fast_server.cpython-311-*.so` before
`fast_server.py` when both exist, so in an editable install (`pip install -e .`, what
scripts/bootstrap.sh does) a source edited after the build would be silently ignored. fnlb's
package `__init__` calls `install()` before any of its modules is imported: when one compiled
module's source differs from the manifest, or `FNLB_PURE_PYTHON=1` is set, a finder placed
first on `sys.meta_path` loads every compiled module from its `.py` instead. All of them,
not only the edited one: compiled modules call each other's functions directly in C, so an
edited module loaded from source next to its compiled callers would still be bypassed.

`fnlb.compiled.BUILD` says which build runs (scripts/bootstrap.sh rebuilds when it is
`STALE`; bench/fast_plane_cpu prints it).
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from collections.abc import Mapping, Sequence
from importlib.abc import MetaPathFinder
from importlib.machinery import ModuleSpec
from importlib.util import spec_from_file_location
from pathlib import Path
from types import ModuleType
from typing import Final

PACKAGE: Final = Path(__file__).resolve().parent
MANIFEST: Final = PACKAGE / "compiled.json"

COMPILED: Final = "compiled"
"""The call path runs the modules mypyc compiled."""
PURE: Final = "pure Python"
"""Nothing was compiled (no compiler or mypyc at install time, or FNLB_COMPILE=0)."""
FORCED: Final = "pure Python (FNLB_PURE_PYTHON=1)"
"""Compiled modules exist; their sources run, as asked."""
STALE: Final = "pure Python (stale compiled modules)"
"""Compiled modules exist but a source changed since: the sources run."""


def source_of(module: str, package: Path = PACKAGE) -> Path:
    """The `.py` file of a module of the package at `package` ("fnlb.proxy.http1")."""
    _, _, rest = module.partition(".")
    return package.joinpath(*rest.split(".")).with_suffix(".py") if rest else package


def stale_modules(manifest: Mapping[str, str], package: Path = PACKAGE) -> list[str]:
    """The manifest's modules whose source is missing or differs from the compiled one."""
    stale = []
    for module, digest in sorted(manifest.items()):
        try:
            now = hashlib.sha256(source_of(module, package).read_bytes()).hexdigest()
        except OSError:
            now = ""
        if now != digest:
            stale.append(module)
    return stale


def plan(
    manifest: Mapping[str, str] | None, environ: Mapping[str, str], package: Path = PACKAGE
) -> tuple[str, list[str]]:
    """(which build runs, the modules to load from source); `manifest`: None when nothing
    was compiled."""
    if not manifest:
        return PURE, []
    if environ.get("FNLB_PURE_PYTHON", "") not in ("", "0"):
        return FORCED, sorted(manifest)
    if stale_modules(manifest, package):
        return STALE, sorted(manifest)
    return COMPILED, []


class SourcesFirst(MetaPathFinder):
    """Finds the given modules' `.py` files ahead of every other finder (and their `.so`)."""

    def __init__(self, sources: Mapping[str, Path]) -> None:
        self.sources = dict(sources)

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        source = self.sources.get(fullname)
        return None if source is None else spec_from_file_location(fullname, source)


def read_manifest(path: Path = MANIFEST) -> dict[str, str] | None:
    """The manifest setup.py wrote, or None without one (or with one unreadable)."""
    try:
        loaded = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(loaded, dict):
        return None
    return {str(k): str(v) for k, v in loaded.items()}


BUILD: str = PURE
"""Which build this process runs (set by `install`)."""


def install() -> str:
    """Decide once per process which build runs (fnlb/__init__ calls it) and return it."""
    global BUILD
    if any(isinstance(f, SourcesFirst) for f in sys.meta_path):
        return BUILD
    BUILD, modules = plan(read_manifest(), os.environ)
    if modules:
        sys.meta_path.insert(0, SourcesFirst({m: source_of(m) for m in modules}))
    if BUILD == STALE:
        print(
            "fnlb: the compiled call path is older than its sources; running the sources "
            "(rebuild with `pip install -e .` or scripts/bootstrap.sh)",
            file=sys.stderr,
        )
    return BUILD
