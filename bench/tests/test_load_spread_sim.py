"""bench/load_spread_sim: load digests over the real SWIM member, in virtual time.

Direct digests (what the runtime sends) must reach every peer fast enough for every peer to
know the cluster-wide load within ~2 s (issue 4), agree on the settled routing inputs, and
cost a fraction of relayed broadcasts.
"""

from __future__ import annotations

import pytest

from bench.load_spread_sim import main, simulate


@pytest.mark.parametrize("loss", [0.0, 0.05])
def test_direct_digests_give_every_peer_the_cluster_wide_load(loss: float) -> None:
    run = simulate(11, loss, "direct", peers=6, seconds=20.0)
    # rates read between two publications sag by up to 0.3 s / tau = 10 %
    assert run.truth_rate == pytest.approx(210.0, rel=0.1)
    assert len(run.reach_ms) > 0.5 * 20 / 0.3 * 6 * 5  # most digests reach each peer as newest
    assert run.p(0.99) < 1000  # docs/routing.md has the measured table
    for peer, rate in run.rates.items():
        assert run.peers_seen[peer] == sorted(run.rates)
        assert rate == pytest.approx(210.0, rel=0.1)
    assert run.agree_at_end
    assert run.violations == []


def test_direct_digests_cost_a_fraction_of_broadcasts_and_routing_inputs_still_agree() -> None:
    broadcast = simulate(1, 0.05, "broadcast", peers=6, seconds=15.0)
    direct = simulate(1, 0.05, "direct", peers=6, seconds=15.0)
    assert direct.bytes_per_peer_s < broadcast.bytes_per_peer_s / 3
    assert direct.agree >= 0.95
    assert direct.p(0.99) < 1000  # every peer reads a digest made a second ago


def test_the_table_lists_both_deliveries(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--seconds", "10", "--losses", "0", "--seeds", "1"]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| ")]
    assert [r.split("|")[1].strip() for r in rows[1:]] == ["broadcast", "direct"]
