"""Placed homes: the hottest functions' containers spread evenly, identically on every peer."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fnlb.cluster.view import NodeView
from fnlb.routing.load_router import Router
from fnlb.routing.placement import HOT_HOMES, container_demand, place

NODES = [f"10.0.0.{i}:8080" for i in range(1, 6)]
T = 1_800_000_000.0


def view(nodes: list[str] = NODES) -> NodeView:
    return NodeView(1, dict.fromkeys(nodes, "online"))


def test_demand_is_the_chance_of_a_warm_container() -> None:
    assert container_demand(0.0) == 0.0
    assert container_demand(0.001) == pytest.approx(0.03, abs=0.001)  # rarely warm
    assert container_demand(2.0) == pytest.approx(1.0)  # called every half second: always warm
    assert container_demand(0.1, idle_timeout_s=10.0) == pytest.approx(0.632, abs=0.001)
    rates = [0.001, 0.01, 0.1, 1.0]
    assert [container_demand(r) for r in rates] == sorted(container_demand(r) for r in rates)


def test_functions_that_all_hash_to_one_node_are_spread_over_all() -> None:
    """What rendezvous alone cannot do: equally hot functions sharing a first choice."""
    v = view()
    first = v.candidates("probe")[0]
    same_home = [k for k in (f"r/app/f{i}" for i in range(2000)) if v.candidates(k)[0] == first]
    hot = same_home[:10]
    homes = place(dict.fromkeys(hot, 1.0), v.candidates)
    per_node = {n: sum(1 for k in hot if homes[k] == n) for n in NODES}
    assert sorted(per_node.values()) == [2, 2, 2, 2, 2]


def test_the_hottest_function_keeps_its_rendezvous_home_even_among_equally_warm_ones() -> None:
    """Every function called every few seconds has a demand of about 1: the rate decides who
    is placed first, so the one with the most warm containers is never the one moved."""
    v = view()
    first = v.candidates("r/app/zzz")[0]
    rivals = [k for k in (f"r/app/a{i}" for i in range(500)) if v.candidates(k)[0] == first][:4]
    rates = {k: 1.0 for k in rivals}
    rates["r/app/zzz"] = 50.0
    homes = place(rates, v.candidates)
    assert homes["r/app/zzz"] == first
    assert sum(1 for k in rivals if homes[k] == first) == 0  # the share of that node is taken


def test_only_the_hottest_functions_are_placed_and_ties_go_by_name() -> None:
    v = view()
    rates = {f"r/app/f{i:03d}": 1.0 + (i % 7) for i in range(100)}
    homes = place(rates, v.candidates)
    assert len(homes) == HOT_HOMES
    ranked = sorted(rates, key=lambda k: (-rates[k], k))
    assert set(homes) == set(ranked[:HOT_HOMES])
    assert place({}, v.candidates) == {}
    assert place({"r/app/f": 1.0}, view(NODES[:1]).candidates) == {}


@given(
    st.dictionaries(
        st.text(min_size=1, max_size=12), st.floats(min_value=0.0, max_value=50.0), max_size=40
    )
)
def test_same_inputs_same_homes_whatever_the_order_they_arrive_in(rates: dict[str, float]) -> None:
    """Two peers reading the same settled load place alike."""
    shuffled = list(rates.items())
    random.Random(len(rates)).shuffle(shuffled)
    assert place(rates, view().candidates) == place(dict(shuffled), view().candidates)


def test_the_router_sends_a_placed_function_to_its_home_then_the_rendezvous_order() -> None:
    v = view()
    key = "r/app/hot"
    order = v.candidates(key)
    home = order[3]
    router = Router()
    router.update(homes={key: home})
    got = router.candidates(key, v, T)
    assert list(got) == [home, *(n for n in order if n != home)]
    assert router.candidates(key, v, T) is got  # made once, not per call
    assert router.candidates("r/app/other", v, T) is v.candidates("r/app/other")
    other = view([n for n in NODES if n != home])
    assert list(router.candidates(key, other, T)) == list(other.candidates(key))  # home gone
    router.update(homes={})
    assert router.candidates(key, v, T) is order


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2])
def test_every_peer_places_the_same_homes_from_gossiped_load(seed: int) -> None:
    """3 peers, digests gossiped with delay and 5 % loss, clocks a few ms apart, 40 functions
    with Zipf rates: at each placement epoch every peer computes the same homes from its own
    settled reads, and they spread the hottest functions over the nodes."""
    from fnlb.sim.routing import RoutingSim, zipf_workload

    sim = RoutingSim(nodes=5, peers=3, seed=seed)
    sim.run(125.0, zipf_workload(40, 200.0, 0.05, s=1.1))
    epochs = sorted(set.intersection(*(set(p.placements) for p in sim.peers)))
    epochs = epochs[2:]  # placed at the first tick and at the boundary at t=0: no load yet
    assert len(epochs) >= 3
    for epoch in epochs:
        homes = [p.placements[epoch] for p in sim.peers]
        assert homes[0] == homes[1] == homes[2]
        assert len(homes[0]) == 16
        per_node = [list(homes[0].values()).count(n) for n in sim.node_names]
        assert max(per_node) - min(per_node) <= 1  # 16 equally warm functions over 5 nodes
