"""bench/placement_agreement: it counts the ticks at which a restarted peer places
differently, which the push-pull agreement brings to none."""

from __future__ import annotations

import pytest

from bench.placement_agreement import differing_ticks, main
from fnlb.peer.core import Peer
from fnlb.routing.admission import Admission


def test_a_restarted_peer_that_takes_no_placement_differs_at_every_tick() -> None:
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(Admission, "offer", lambda self, other, now_epoch=None: False)
        alone = differing_ticks(1, 60)
    assert alone == [(30, 30), (30, 30)]
    agreed = differing_ticks(1, 60)
    assert [n for _d, n in agreed] == [30, 30]
    assert sum(d for d, _n in agreed) < 10


def test_a_restarted_peer_that_asks_for_an_exchange_at_each_epoch_agrees_within_ticks() -> None:
    """Seed 2: with push-pull only at its own 30 s phase the restarted peer differed at 25
    of the 30 ticks after its first new epoch's first crossing; asking for one a tick into
    each epoch (`Peer.take_push_pull`, honoured by the simulator), at a few."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(Peer, "take_push_pull", lambda self: False)
        unasked = differing_ticks(2, 60)
    assert unasked[1][0] >= 20
    asked = differing_ticks(2, 60)
    assert all(d <= 3 for d, _n in asked)


def test_the_table_has_a_row_a_seed_and_a_column_a_window(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["--seeds", "1", "--seconds", "45"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1] == "| seed | 0-30 | 30-45 |"
    assert lines[3].startswith("| 1 | ")
    assert lines[3].count("/30") == 1
    assert lines[3].count("/15") == 1


def test_bad_arguments_are_refused(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["--seeds", "x"], ["--seconds", "0"]):
        with pytest.raises(SystemExit) as e:
            main(argv)
        assert e.value.code == 2
    assert "--seeds" in capsys.readouterr().err
