"""Issue #11 defect 7 in the simulator with real Peers: load gossip flat in N, and fast.

Before the load tree every peer sent its digest straight to every other every 0.3 s: its
gossip traffic grew with N (about 8x from N=5 to N=40 here), and a new hot function's
cluster rate took ~7 s to be known within 10 % (the estimator's 3 s time constant alone
took 6.9 s). Virtual time and a seed per run: the figures replay exactly.
"""

from __future__ import annotations

from fnlb.sim.calls import Calls
from fnlb.sim.cluster import ClusterSim

HOT = "/r/app/hot"


def loaded(n: int, seed: int) -> tuple[ClusterSim, Calls]:
    sim = ClusterSim(peers=n, nodes=3, seed=seed, hc_interval=3.0)
    assert sim.run_until_true(lambda: sim.gossip.converged(sim.names), timeout=30)
    calls = Calls(sim, functions=300, rate=20.0, seed=seed)
    calls.hot["/r/app/warm"] = 5.0
    sim.run_for(5)
    return sim, calls


def sent_per_peer(sim: ClusterSim, seconds: float) -> float:
    """Gossip bytes sent per peer per virtual second (datagrams and push-pull) over `seconds`."""

    def total() -> int:
        t = sim.gossip.traffic
        return int(t["datagram_bytes"] + t["stream_bytes"])

    before, t0 = total(), sim.now
    sim.run_for(seconds)
    return (total() - before) / len(sim.names) / (sim.now - t0)


def test_gossip_sent_per_peer_under_load_does_not_grow_with_the_cluster() -> None:
    small, _ = loaded(5, seed=3)
    large, _ = loaded(40, seed=3)
    a, b = sent_per_peer(small, 10), sent_per_peer(large, 10)
    assert b <= 1.5 * a, (a, b)
    assert b < 20_000  # issue #11's budget at N=100, with room


def test_every_peer_knows_a_new_hot_functions_cluster_rate_within_3_s() -> None:
    n, rate = 20, 10.0
    sim, calls = loaded(n, seed=5)
    calls.hot[HOT] = rate
    truth = n * rate

    def known() -> bool:
        return all(
            abs(p.peer.load.function_load(HOT, sim.peer_ms(name) / 1000).rate - truth)
            <= 0.1 * truth
            for name, p in sim.peers.items()
        )

    assert sim.run_until_true(known, timeout=3.0, step=0.1)


def test_a_dead_parents_subtree_is_counted_again_once_its_death_is_known() -> None:
    """The root (the smallest name) crashes: the next one takes over and sums everyone."""
    n, rate = 12, 10.0
    sim, calls = loaded(n, seed=7)
    calls.hot[HOT] = rate
    sim.run_for(4)
    sim.crash("p0")
    live = [name for name in sim.names if name != "p0"]
    truth = (n - 1) * rate

    def summed() -> bool:
        return all(
            abs(sim.peer(name).load.function_load(HOT, sim.peer_ms(name) / 1000).rate - truth)
            <= 0.1 * truth
            for name in live
        )

    assert sim.run_until_true(summed, timeout=10.0, step=0.1)


def test_each_side_of_a_partition_sums_what_it_sees_and_one_sum_after_the_heal() -> None:
    n, rate = 10, 10.0
    sim, calls = loaded(n, seed=9)
    calls.hot[HOT] = rate
    sim.run_for(3)
    left, right = sim.names[:4], sim.names[4:]
    sim.partition([left, right])

    def each_side_sums_itself() -> bool:
        return all(
            abs(sim.peer(name).load.function_load(HOT, sim.peer_ms(name) / 1000).rate - truth)
            <= 0.1 * truth
            for side in (left, right)
            for name in side
            for truth in [len(side) * rate]
        )

    assert sim.run_until_true(each_side_sums_itself, timeout=15.0, step=0.1)
    assert {sim.peer(name).load.peers(sim.peer_ms(name) / 1000)[0] for name in right} == {"p4"}
    sim.heal()

    def one_sum() -> bool:
        return all(
            abs(p.peer.load.function_load(HOT, sim.peer_ms(name) / 1000).rate - n * rate)
            <= 0.1 * n * rate
            for name, p in sim.peers.items()
        )

    assert sim.run_until_true(one_sum, timeout=30.0, step=0.1)
