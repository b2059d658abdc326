"""Compiles the proxied call's path with mypyc when it can; pure Python when it cannot.

pyproject.toml holds everything else about the package; this file only adds the compiled
extension modules (docs/proxy.md, "Compiled modules"). Every way it can fail to compile
(`FNLB_COMPILE=0`, no mypyc, mypyc refusing the code, no C compiler, a compiler error) ends
in the same place: a warning on the build's output and an install of the plain `.py` files,
which are the same program, ~1.8x slower per call.

A build that compiled writes `fnlb/compiled.json`: each compiled module's name and the
SHA-256 of the source it was compiled from. `fnlb/compiled.py` reads it when fnlb is
imported and loads the sources instead of every compiled module as soon as one source
differs (an editable install whose `.py` was edited since `pip install -e .`).
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from setuptools import setup
from setuptools.command.build_ext import build_ext

ROOT = Path(__file__).resolve().parent
COMPILED = (
    # the fast plane's own modules: every byte of every call goes through them
    "fnlb/proxy/http1.py",
    "fnlb/proxy/fast_server.py",
    "fnlb/proxy/upstream_pool.py",
    # the per-call bookkeeping they reach (bench/fast_plane_cpu's profile)
    "fnlb/routing/attempt.py",
    "fnlb/routing/backoff.py",
    "fnlb/routing/classic.py",
    "fnlb/routing/function_key.py",
    "fnlb/routing/hotset_policy.py",
    "fnlb/routing/load_router.py",
    "fnlb/routing/picked.py",
    "fnlb/routing/policies.py",
    "fnlb/routing/rendezvous.py",
    "fnlb/routing/siphash.py",
    "fnlb/cluster/load.py",
    "fnlb/cluster/view.py",
    "fnlb/observe/calls.py",
)
"""Not compiled although on the path: fnlb/peer/core.py and fnlb/cluster/state.py, whose
instances tests patch method by method (a compiled class's methods are read-only); see
docs/benchmarks.md for what compiling them would add."""
MANIFEST = "fnlb/compiled.json"


def _warn(why: str) -> None:
    print(f"fnlb: not compiling the call path ({why}); installing pure Python", file=sys.stderr)


def _manifest() -> str:
    digests = {
        path[:-3].replace("/", "."): hashlib.sha256((ROOT / path).read_bytes()).hexdigest()
        for path in COMPILED
    }
    return json.dumps(digests, indent=1, sort_keys=True) + "\n"


class OptionalBuildExt(build_ext):
    """build_ext that falls back to pure Python when the C compiler fails or is missing,
    and writes the manifest only next to modules that were compiled."""

    def run(self) -> None:
        target = (ROOT if self.inplace else Path(self.build_lib)) / MANIFEST
        target.unlink(missing_ok=True)
        if not self.extensions:
            return
        try:
            super().run()
        except Exception as e:  # CCompilerError, ExecError, PlatformError, OSError, ...
            for built in self.get_outputs():
                Path(built).unlink(missing_ok=True)
            _forget_built_in_place()
            _warn(f"the C build failed: {e}")
            self.extensions = []
            return
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(_manifest())

    def get_outputs(self) -> list[str]:
        return list(super().get_outputs()) if self.extensions else []


BUILDING = {"build", "build_ext", "bdist_wheel", "editable_wheel", "develop", "install"}
"""setup.py commands that build the modules; pip also runs it for the metadata alone
(`dist_info`, `egg_info`), where a mypyc run (~40 s) would be wasted."""


def _forget_built_in_place() -> None:
    """Delete what an earlier editable install compiled next to the sources: a build that
    compiles nothing now must not leave `.so` files that Python would import ahead of the
    `.py` files, and without a manifest fnlb/compiled.py could not tell they are stale."""
    (ROOT / MANIFEST).unlink(missing_ok=True)
    for built in ROOT.glob("fnlb__mypyc.*.so"):
        built.unlink()
    for path in COMPILED:
        source = ROOT / path
        for built in source.parent.glob(source.stem + ".*.so"):
            built.unlink()


def _extensions() -> list[Any]:
    if not BUILDING.intersection(sys.argv[1:]):
        return []
    found: Any = None
    if os.environ.get("FNLB_COMPILE", "1") == "0":
        _warn("FNLB_COMPILE=0")
    else:
        try:
            from mypyc.build import mypycify as found
        except ImportError:
            _warn("mypyc is not installed")
    if found is None:
        _forget_built_in_place()
        return []
    mypycify = found
    # mypyc type-checks what it compiles. The build environment pip makes holds the build
    # requirements only, not aiohttp or the stubs the strict check of pyproject.toml needs
    # (that check runs in CI over the whole tree): what it cannot find is typed Any here.
    with tempfile.NamedTemporaryFile("w", suffix=".ini", delete=False) as config:
        config.write("[mypy]\npython_version = 3.11\nignore_missing_imports = True\n")
        config.write("follow_imports = silent\n")
    try:
        return list(mypycify(["--config-file", config.name, *COMPILED], group_name="fnlb"))
    except (Exception, SystemExit) as e:  # mypyc exits on code it refuses
        _warn(f"mypyc failed: {e!r}")
        _forget_built_in_place()
        return []
    finally:
        os.unlink(config.name)


setup(ext_modules=_extensions(), cmdclass={"build_ext": OptionalBuildExt})
