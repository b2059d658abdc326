"""`fnlb keygen`: a fresh key every time, in a form --gossip-key and keyring files accept."""

from __future__ import annotations

import argparse
import base64
import stat
from pathlib import Path

import pytest

from fnlb.cli import keygen
from fnlb.gossip.keyring_file import keyring_from_settings, load_keyring_file


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    keygen.add_arguments(parser)
    return parser.parse_args(argv)


def test_keygen_prints_a_base64_32_byte_key_that_gossip_accepts(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert keygen.run(parse()) == 0
    printed = capsys.readouterr().out.strip()
    assert len(base64.b64decode(printed, validate=True)) == 32
    ring = keyring_from_settings(printed, "", insecure=False)
    assert ring is not None
    assert len(ring.primary) == 32


def test_keygen_makes_a_different_key_each_time(capsys: pytest.CaptureFixture[str]) -> None:
    keygen.run(parse())
    keygen.run(parse())
    first, second = capsys.readouterr().out.split()
    assert first != second


@pytest.mark.parametrize("size", [16, 24, 32])
def test_keygen_bytes_picks_the_aes_size(size: int, capsys: pytest.CaptureFixture[str]) -> None:
    keygen.run(parse("--bytes", str(size)))
    assert len(base64.b64decode(capsys.readouterr().out.strip())) == size


def test_keygen_refuses_other_sizes() -> None:
    with pytest.raises(SystemExit):
        parse("--bytes", "20")


def test_keygen_output_writes_a_0600_keyring_file_and_never_overwrites(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "keyring.json"
    assert keygen.run(parse("--output", str(path))) == 0
    assert capsys.readouterr().out == ""  # the key is not echoed when written to a file
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    first = load_keyring_file(path).keys()
    assert len(first) == 1
    assert keygen.run(parse("--output", str(path))) == 1
    assert "not overwriting" in capsys.readouterr().err
    assert load_keyring_file(path).keys() == first


def test_keygen_output_into_a_missing_directory_fails_cleanly(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert keygen.run(parse("--output", str(tmp_path / "no" / "k.json"))) == 1
    assert "cannot write" in capsys.readouterr().err
