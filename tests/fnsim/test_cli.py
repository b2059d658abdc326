"""`fnlb fnsim` flags: generated from FnSimOptions, bad values refused with exit status 2."""

from __future__ import annotations

import argparse
import dataclasses

import pytest

from fnlb.cli import fnsim as cli
from fnlb.cli import make_parser
from fnlb.fnsim.options import FnSimOptions


def parse(*argv: str) -> tuple[FnSimOptions, argparse.Namespace]:
    parser = make_parser("fnlb fnsim", "test")
    cli.add_arguments(parser)
    args = parser.parse_args(list(argv))
    return cli.options_from(args), args


def test_defaults_come_from_the_dataclass() -> None:
    options, args = parse()
    assert options == FnSimOptions()
    assert args.listen == "127.0.0.1:8080"
    assert args.count == 1


def test_every_knob_has_a_flag() -> None:
    options, _ = parse(
        "--memory-mb=2048",
        "--fn-memory-mb",
        "256",
        "--cold-start-ms=5",
        "--idle-timeout-s=1.5",
        "--max-wait-s=2",
        "--default-ms=0",
        "--jitter=0.25",
        "--no-wait-header",
        "--version=0.3.700",
        "--seed=42",
        "--shutdown-timeout-s=0",
    )
    assert options == FnSimOptions(
        memory_mb=2048,
        fn_memory_mb=256,
        cold_start_ms=5.0,
        idle_timeout_s=1.5,
        max_wait_s=2.0,
        default_ms=0.0,
        jitter=0.25,
        wait_header=False,
        version="0.3.700",
        seed=42,
        shutdown_timeout_s=0.0,
    )
    flags_set = {f.name for f in dataclasses.fields(FnSimOptions)}
    assert {f.name for f in dataclasses.fields(options)} == flags_set


@pytest.mark.parametrize(
    ("argv", "word"),
    [
        (["--memory-mb=64"], "--fn-memory-mb"),
        (["--jitter=3"], "--jitter"),
        (["--cold-start-ms=-1"], "--cold-start-ms"),
        (["--max-wait-s=nan"], "--max-wait-s"),
        (["--count=0"], "--count"),
        (["--listen=nowhere"], "--listen"),
        (["--listen=127.0.0.1:65535", "--count=2"], "--count"),
    ],
)
def test_bad_values_exit_2_naming_the_flag(
    argv: list[str], word: str, capsys: pytest.CaptureFixture[str]
) -> None:
    parser = make_parser("fnlb fnsim", "test")
    cli.add_arguments(parser)
    args = parser.parse_args(argv)
    with pytest.raises(SystemExit) as exit_info:
        cli.run(args)
    assert exit_info.value.code == 2
    assert word in capsys.readouterr().err


def test_a_value_of_the_wrong_type_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    parser = make_parser("fnlb fnsim", "test")
    cli.add_arguments(parser)
    with pytest.raises(SystemExit) as exit_info:
        parser.parse_args(["--memory-mb=lots"])
    assert exit_info.value.code == 2
    assert "--memory-mb" in capsys.readouterr().err
