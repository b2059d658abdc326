"""The state directory keeps what was saved, atomically, and refuses to guess."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from fnlb.errors import ConfigError
from fnlb.shell.persist import StateDir


def test_round_trip_and_replace(tmp_path: Path) -> None:
    d = StateDir(tmp_path / "s")
    d.ensure()
    assert d.load() is None
    d.save({"nodes": ["a:1"]})
    d.save({"nodes": ["a:1", "b:2"]})
    state = d.load()
    assert state is not None
    assert state["nodes"] == ["a:1", "b:2"]
    assert [p.name for p in (tmp_path / "s").iterdir()] == ["state.json"]
    assert (os.stat(d.file).st_mode & 0o777) == 0o600


def test_corrupt_or_foreign_file_stops_the_start(tmp_path: Path) -> None:
    d = StateDir(tmp_path)
    d.file.write_text("{torn")
    with pytest.raises(ConfigError, match="corrupt"):
        d.load()
    d.file.write_text('{"format": 99}')
    with pytest.raises(ConfigError, match="format"):
        d.load()


def test_unwritable_directory_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ConfigError, match="not writable"):
        StateDir(blocker / "sub").ensure()
