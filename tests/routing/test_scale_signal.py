"""The scale signal: out fast (panic window), in only after a long quiet, alike on every peer."""

from __future__ import annotations

import random
from itertools import pairwise

import pytest

from fnlb.errors import LocalProtocolError
from fnlb.routing.scale_signal import ScaleDecision, ScalePolicy, ScaleSignal, containers_needed
from fnlb.sim.routing import RoutingSim

SLOTS = 8  # containers per node; planned at 70 %: 5.6 per node
PER_NODE = SLOTS * 0.7


def run(signal: ScaleSignal, ticks: range, needed: int, current: int) -> list[ScaleDecision]:
    return [signal.update(t * 1000, needed, current, SLOTS) for t in ticks]


def test_steady_load_at_the_current_size_holds() -> None:
    s = ScaleSignal()
    decisions = run(s, range(1, 400), needed=56, current=10)  # 10 nodes' worth
    assert {d.recommendation for d in decisions} == {"hold"}
    assert decisions[-1].desired == 10
    assert decisions[-1].stable_nodes == pytest.approx(10.0)


@pytest.mark.parametrize("base_nodes", [1, 3, 10, 40])
def test_a_2x_rise_says_out_within_one_panic_window(base_nodes: int) -> None:
    s = ScaleSignal()
    needed = round(base_nodes * PER_NODE)
    run(s, range(1, 121), needed, base_nodes)
    after = run(s, range(121, 127), 2 * needed, base_nodes)  # 6 ticks = the panic window
    assert after[-1].recommendation == "out"
    assert after[-1].desired >= 2 * base_nodes - 1
    first_out = next(k for k, d in enumerate(after) if d.recommendation == "out")
    assert first_out <= 5


def test_a_spike_past_twice_the_size_panics_and_panic_never_scales_in() -> None:
    s = ScaleSignal()
    run(s, range(1, 61), 56, 10)
    spike = run(s, range(61, 71), 300, 10)
    assert spike[-1].panic
    assert spike[-1].desired >= 50
    # the operator scaled out; the spike is gone at once: no scale-in while panicking
    calm = run(s, range(71, 131), 10, 60)
    assert all(d.panic and d.recommendation != "in" for d in calm)


def test_scale_in_waits_for_five_quiet_minutes_and_at_most_halves() -> None:
    s = ScaleSignal()
    run(s, range(1, 301), 56, 10)
    quiet = run(s, range(301, 801), 11, 10)  # 2 nodes' worth from tick 301
    first_in = next(k for k, d in enumerate(quiet) if d.recommendation == "in")
    assert 300 <= first_in <= 400  # the stable mean falls in 60 s, then 300 s must pass
    assert all(d.recommendation == "hold" for d in quiet[:first_in])
    # HPA-like: the highest recommendation of the last 300 s, so it comes down as the stable
    # mean did (over 60 s), and at most to half the current count at once
    assert 5 <= quiet[first_in].desired <= 9
    assert quiet[first_in + 60].desired == 5


def test_a_new_peer_does_not_say_in_before_it_has_seen_a_whole_window() -> None:
    s = ScaleSignal()
    decisions = run(s, range(1, 310), 5, 10)
    assert all(d.recommendation == "hold" for d in decisions[:299])
    assert decisions[-1].recommendation == "in"


def test_from_no_nodes_any_demand_says_out() -> None:
    s = ScaleSignal()
    d = s.update(1000, 3, 0, SLOTS)
    assert (d.recommendation, d.desired) == ("out", 1)
    d = ScaleSignal().update(1000, 0, 0, SLOTS)
    assert (d.recommendation, d.desired) == ("out", 1)  # min_nodes 1


def test_min_and_max_nodes_bound_the_desired_count() -> None:
    s = ScaleSignal(ScalePolicy(max_nodes=12))
    assert s.update(1000, 1000, 10, SLOTS).desired == 12
    s = ScaleSignal(ScalePolicy(min_nodes=3, scale_in_after_s=10))
    decisions = run(s, range(1, 200), 0, 4)
    assert decisions[-1].desired == 3
    assert decisions[-1].recommendation == "in"


def noisy(rng: random.Random, mean: float) -> int:
    return max(0, round(rng.gauss(mean, mean**0.5)))


@pytest.mark.parametrize("seed", range(5))
def test_steady_noisy_load_never_flips_direction_more_than_once_in_300_s(seed: int) -> None:
    """A closed loop: noisy steady demand (Poisson-like, 56 containers = 10 nodes' worth);
    the operator (or HPA) applies every recommendation 30 s after it is made."""
    rng = random.Random(seed)
    s = ScaleSignal()
    current = 10
    pending: list[tuple[int, int]] = []
    directions: list[str] = []
    for t in range(1, 301):
        while pending and pending[0][0] <= t:
            current = pending.pop(0)[1]
        d = s.update(t * 1000, noisy(rng, 56.0), current, SLOTS)
        if d.recommendation != "hold":
            if not directions or directions[-1] != d.recommendation:
                directions.append(d.recommendation)
            if not pending:
                pending.append((t + 30, d.desired))
    flips = sum(1 for a, b in pairwise(directions) if a != b)
    assert flips <= 1


def test_peers_fed_the_same_cuts_publish_the_same_decisions() -> None:
    rng = random.Random(9)
    phases = [(200, 45.0), (200, 90.0), (500, 10.0)]  # 8 nodes' worth, 16, then 2
    needs = [noisy(rng, mean) for ticks, mean in phases for _ in range(ticks)]
    inputs = [(t * 1000, need, 8) for t, need in enumerate(needs, start=1)]
    a, b = ScaleSignal(), ScaleSignal()
    got_a = [a.update(cut, need, cur, SLOTS) for cut, need, cur in inputs]
    got_b = []
    for cut, need, cur in inputs:
        got_b.append(b.update(cut, need, cur, SLOTS))
        assert b.update(cut, need + 100, cur, SLOTS) == got_b[-1]  # a repeated tick: ignored
    assert got_a == got_b
    assert {d.recommendation for d in got_a} == {"out", "in", "hold"}


def test_the_decision_as_json() -> None:
    d = ScaleSignal().update(5000, 112, 10, SLOTS)
    assert d.as_dict() == {
        "desired_nodes": 20,
        "current_nodes": 10,
        "recommendation": "out",
        "panic": True,
        "needed_containers": 112,
        "stable_demand_nodes": 20.0,
        "panic_demand_nodes": 20.0,
        "at_ms": 5000,
    }


def test_containers_needed_counts_in_flight_and_one_warm_container_per_called_function() -> None:
    # (rate, in-flight): a busy one, two idle but called, one not called; 3 lumped in flight
    assert containers_needed([(50.0, 12), (0.5, 0), (0.1, 0), (0.0, 0)], 15) == 12 + 2 + 3
    assert containers_needed([], 7) == 7
    assert containers_needed([(1.0, 5)], 2) == 5  # lumps cannot be negative


def test_bad_input_and_policies_are_refused() -> None:
    s = ScaleSignal()
    with pytest.raises(LocalProtocolError):
        s.update(1500, 1, 1, SLOTS)
    with pytest.raises(LocalProtocolError):
        s.update(1000, -1, 1, SLOTS)
    with pytest.raises(LocalProtocolError):
        s.update(1000, 1, 1, 0)
    for bad in (
        ScalePolicy(tick_ms=0),
        ScalePolicy(panic_window_s=100.0),
        ScalePolicy(panic_threshold=1.0),
        ScalePolicy(target_utilisation=0.0),
        ScalePolicy(max_scale_in_rate=0.5),
        ScalePolicy(min_nodes=-1),
    ):
        with pytest.raises(LocalProtocolError):
            ScaleSignal(bad)


@pytest.mark.slow
def test_every_peer_publishes_the_same_signal_from_settled_gossiped_load() -> None:
    """3 simulated peers (gossip delayed and lossy, clocks a few ms apart) feed their own
    ScaleSignal from settled reads at aligned cuts: they publish the same decision."""
    sim = RoutingSim(nodes=3, peers=3, seed=5)

    def load(t: float) -> dict[str, tuple[float, float]]:
        hot = 120.0 if t >= 30.0 else 30.0  # 3 -> 12 calls in flight of 100 ms
        return {"hot": (hot, 0.1), **{f"bg{i}": (2.0, 0.05) for i in range(10)}}

    sim.run(40.0, load)
    ticks = sorted(set.intersection(*(set(p.decisions) for p in sim.peers)))
    same = [t for t in ticks if len({p.decisions[t] for p in sim.peers}) == 1]
    assert len(same) >= 0.95 * len(ticks)
    start = ticks[0]
    # 3 in flight and 10 functions kept warm: ~13 containers, 2.3 nodes' worth of 3
    before = {p.decisions[t].recommendation for p in sim.peers for t in ticks if t - start < 28}
    assert before == {"hold"}
    # 12 in flight: ~22 containers, 4 nodes' worth, seen within the 6 s panic window
    assert all(p.decisions[ticks[-1]].recommendation == "out" for p in sim.peers)
    assert all(p.decisions[ticks[-1]].desired >= 4 for p in sim.peers)
