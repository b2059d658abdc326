"""What an operator installs is what was tested: build requirement, ranges, constraints."""

from __future__ import annotations

import tomllib
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def constraints() -> dict[str, Version]:
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            pins[name.lower()] = Version(version)
    return pins


def normal(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


def test_the_build_backend_can_build_an_spdx_licence() -> None:
    backend, _mypy = PYPROJECT["build-system"]["requires"]
    req = Requirement(backend)
    assert req.name == "setuptools"
    assert isinstance(PYPROJECT["project"]["license"], str)  # SPDX form: setuptools 77+
    assert not req.specifier.contains("76.9")
    assert req.specifier.contains(str(constraints()["setuptools"]))


def test_every_runtime_dependency_is_pinned_within_its_range() -> None:
    pins = constraints()
    env = {**{str(k): str(v) for k, v in default_environment().items()}, "extra": ""}
    for text in PYPROJECT["project"]["dependencies"]:
        req = Requirement(text)
        if req.marker is not None and not req.marker.evaluate(env):
            continue
        assert normal(req.name) in pins, f"{req.name} is not in constraints.txt"
        assert req.specifier.contains(pins[normal(req.name)]), f"{req.name} pin out of range"


def test_aiohttp_whose_internals_fnlb_uses_has_an_upper_bound() -> None:
    (aiohttp,) = [
        Requirement(d) for d in PYPROJECT["project"]["dependencies"] if d.startswith("aiohttp")
    ]
    assert any(s.operator in ("<", "<=", "~=", "==") for s in aiohttp.specifier)


def test_the_compiler_of_the_call_path_is_pinned_within_its_range() -> None:
    """mypyc's C output depends on its version: the build installs the tested one."""
    _backend, mypy = PYPROJECT["build-system"]["requires"]
    req = Requirement(mypy)
    assert req.name == "mypy"
    assert req.specifier.contains(str(constraints()["mypy"]))
