"""bench/warm_wait_cpu runs both rows and leaves the fast plane as it found it."""

from __future__ import annotations

import pytest

from bench import warm_wait_cpu
from fnlb.proxy import fast_server


def test_both_rows_print_and_the_proxy_is_restored(capsys: pytest.CaptureFixture[str]) -> None:
    plain = fast_server.FastProxy.__init__
    assert warm_wait_cpu.main(["--rounds", "1", "--calls", "50"]) == 0
    out = capsys.readouterr().out
    assert "| -warm-wait=0 |" in out
    assert "| -warm-wait=300ms (no call held) |" in out
    assert fast_server.FastProxy.__init__ is plain


def test_bad_arguments_exit_with_a_message(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        warm_wait_cpu.main(["--rounds", "0"])
    assert e.value.code == 2
    assert "--rounds and --calls must be at least 1" in capsys.readouterr().err
