"""bench/load_spread_sim: the load tree over the real SWIM member, in virtual time.

The cluster's sum must reach every peer fast enough for every peer to know the cluster-wide
load within ~2 s (issue 4), and the peers must agree on the settled routing inputs.
"""

from __future__ import annotations

import pytest

from bench.load_spread_sim import main, simulate


@pytest.mark.parametrize("loss", [0.0, 0.05])
def test_the_tree_gives_every_peer_the_cluster_wide_load(loss: float) -> None:
    run = simulate(11, loss, "tree", peers=6, seconds=20.0)
    assert len(run.reach_ms) > 0.5 * 20 / 0.3 * 5  # most sums reach each peer as newest
    assert run.p(0.99) < 1000  # docs/routing.md has the measured table
    for peer, rate in run.rates.items():
        assert run.peers_seen[peer] == ["m0"]  # one source: the root's sum
        assert rate == pytest.approx(210.0, rel=0.1)  # 10 + 20 + ... + 60 calls/s
    assert run.agree >= 0.95
    assert run.agree_at_end
    assert run.violations == []


def test_the_table_lists_the_tree(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--seconds", "10", "--losses", "0", "--seeds", "1"]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| ")]
    assert [r.split("|")[1].strip() for r in rows[1:]] == ["tree"]
