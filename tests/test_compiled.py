"""The call path's compiled build: it runs where it was built, never shadows an edited source,
and the sources run on demand (fnlb/compiled.py, setup.py, docs/proxy.md)."""

from __future__ import annotations

import hashlib
import importlib
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from fnlb import compiled
from fnlb.compiled import (
    COMPILED,
    FORCED,
    PURE,
    STALE,
    SourcesFirst,
    plan,
    read_manifest,
    source_of,
    stale_modules,
)

ROOT = Path(__file__).resolve().parent.parent


def package(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """A package `pkg` with two modules, and the manifest a build of both would write."""
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    manifest = {}
    for name in ("a", "b"):
        source = pkg / f"{name}.py"
        source.write_text(f"WHERE = 'source {name}'\n")
        manifest[f"pkg.{name}"] = hashlib.sha256(source.read_bytes()).hexdigest()
    return pkg, manifest


def test_a_module_name_maps_to_its_source_under_the_package() -> None:
    assert source_of("fnlb.proxy.http1") == ROOT / "fnlb" / "proxy" / "http1.py"
    assert source_of("fnlb.proxy.http1").is_file()


def test_the_compiled_build_runs_while_every_source_is_the_one_compiled(tmp_path: Path) -> None:
    pkg, manifest = package(tmp_path)
    assert stale_modules(manifest, pkg) == []
    assert plan(manifest, {}, pkg) == (COMPILED, [])


def test_one_edited_source_runs_every_compiled_module_from_source(tmp_path: Path) -> None:
    # compiled modules call each other in C: an edited b.py next to a compiled a would not
    # be what a calls, so both go back to their sources
    pkg, manifest = package(tmp_path)
    (pkg / "b.py").write_text("WHERE = 'edited'\n")
    assert stale_modules(manifest, pkg) == ["pkg.b"]
    assert plan(manifest, {}, pkg) == (STALE, ["pkg.a", "pkg.b"])
    (pkg / "a.py").unlink()
    assert stale_modules(manifest, pkg) == ["pkg.a", "pkg.b"]


def test_fnlb_pure_python_runs_the_sources_and_no_build_runs_nothing_else(
    tmp_path: Path,
) -> None:
    pkg, manifest = package(tmp_path)
    assert plan(manifest, {"FNLB_PURE_PYTHON": "1"}, pkg) == (FORCED, ["pkg.a", "pkg.b"])
    assert plan(manifest, {"FNLB_PURE_PYTHON": "0"}, pkg) == (COMPILED, [])
    assert plan(None, {"FNLB_PURE_PYTHON": "1"}, pkg) == (PURE, [])
    assert plan({}, {}, pkg) == (PURE, [])


def test_an_unreadable_manifest_is_no_build(tmp_path: Path) -> None:
    assert read_manifest(tmp_path / "missing.json") is None
    (tmp_path / "bad.json").write_text("{not json")
    assert read_manifest(tmp_path / "bad.json") is None
    (tmp_path / "list.json").write_text("[1]")
    assert read_manifest(tmp_path / "list.json") is None
    (tmp_path / "ok.json").write_text('{"pkg.a": "00"}')
    assert read_manifest(tmp_path / "ok.json") == {"pkg.a": "00"}


def test_the_finder_loads_the_source_where_an_extension_module_shadows_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a stale extension next to its source: Python's own finder prefers the extension
    pkg, _ = package(tmp_path)
    suffix = sysconfig.get_config_var("EXT_SUFFIX")
    (pkg / f"a{suffix}").write_bytes(b"not a shared object")
    monkeypatch.syspath_prepend(str(tmp_path))
    for name in ("pkg", "pkg.a"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    importlib.invalidate_caches()
    with pytest.raises(ImportError):
        importlib.import_module("pkg.a")
    monkeypatch.delitem(sys.modules, "pkg.a", raising=False)
    finder = SourcesFirst({"pkg.a": pkg / "a.py"})
    monkeypatch.setattr(sys, "meta_path", [finder, *sys.meta_path])
    assert importlib.import_module("pkg.a").WHERE == "source a"
    assert finder.find_spec("pkg.b", None) is None  # not listed: the usual finders


def imported(env: dict[str, str]) -> list[str]:
    """(fnlb.compiled.BUILD, fast_server's file) in a fresh interpreter."""
    code = (
        "import fnlb.compiled as c, fnlb.proxy.fast_server as f; print(c.BUILD); print(f.__file__)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        cwd=ROOT,
        timeout=60,
        check=True,
    )
    return done.stdout.splitlines()


def test_a_compiled_build_imports_the_extensions_and_fnlb_pure_python_the_sources() -> None:
    manifest = read_manifest()
    if manifest is None:
        pytest.skip("this install compiled nothing (no C compiler, or FNLB_COMPILE=0)")
    if stale_modules(manifest):
        pytest.skip("sources edited since the build (scripts/bootstrap.sh compiles again)")
    build, where = imported({"FNLB_PURE_PYTHON": ""})
    assert (build, Path(where).suffix) == (COMPILED, ".so")
    build, where = imported({"FNLB_PURE_PYTHON": "1"})
    assert (build, Path(where).name) == (FORCED, "fast_server.py")


def test_the_tests_run_the_compiled_call_path_where_a_compiler_exists() -> None:
    """CI (scripts/test.sh: bootstrap, then pytest) tests the compiled build, not a silent
    fallback: where gcc exists and nobody asked for pure Python, the build compiled."""
    if shutil.which("cc") is None and shutil.which("gcc") is None:
        pytest.skip("no C compiler: fnlb installs pure Python here")
    if os.environ.get("FNLB_COMPILE") == "0" or os.environ.get("FNLB_PURE_PYTHON", "0") != "0":
        pytest.skip("pure Python asked for (FNLB_COMPILE=0 or FNLB_PURE_PYTHON=1)")
    assert compiled.BUILD == COMPILED, (
        f"{compiled.BUILD}: run scripts/bootstrap.sh (it compiles the call path again)"
    )
    assert Path(importlib.import_module("fnlb.proxy.fast_server").__file__ or "").suffix == ".so"
