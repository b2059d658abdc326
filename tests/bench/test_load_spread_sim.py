"""bench/load_spread_sim: direct load digests cost less than relayed ones and agree as well.

Virtual time over the real SWIM member, so the comparison is deterministic.
"""

from __future__ import annotations

import pytest

from bench.load_spread_sim import main, trial


def test_direct_digests_cost_a_fraction_of_broadcasts_and_routing_inputs_still_agree() -> None:
    *_, b_bytes = trial(1, 0.05, "broadcast", peers=6, seconds=15.0)
    _, d_p99, d_agree, d_bytes = trial(1, 0.05, "direct", peers=6, seconds=15.0)
    assert d_bytes < b_bytes / 3
    assert d_agree >= 0.95
    assert d_p99 < 1000  # every peer reads a digest made a second ago


def test_the_table_lists_both_deliveries(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--seconds", "10", "--losses", "0", "--seeds", "1"]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| ")]
    assert [r.split("|")[1].strip() for r in rows[1:]] == ["broadcast", "direct"]
