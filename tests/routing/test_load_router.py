"""The router: same view same decisions, least load within the hot set, bounded load, spill."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from fnlb.cluster.view import NodeView
from fnlb.errors import LocalProtocolError
from fnlb.fnsim.model import PoolConfig
from fnlb.routing.backoff import Backoff
from fnlb.routing.load_router import NodeCapacity, Router, RouterPolicy
from fnlb.routing.widths import WidthPolicy
from fnlb.sim.routing import RoutingSim, zipf_workload

NODES = [f"10.0.0.{i}:8080" for i in range(1, 11)]
T = 1_800_000_000.0


def view(nodes: list[str] = NODES, version: int = 1) -> NodeView:
    return NodeView(version, dict.fromkeys(nodes, "online"))


def busy(router: Router, node: str, calls: int, key: str = "other") -> None:
    for _ in range(calls):
        router.call_started(key, node)


@pytest.mark.slow
def test_same_view_same_decisions_for_100000_keys() -> None:
    """Two routers (two peers) fed equal views and equal shared figures choose alike."""
    keys = [f"r/app{i % 97}/fn{i}" for i in range(100_000)]
    widths = {k: 1 + i % 4 for i, k in enumerate(keys[::50])}
    remote = {n: i % 3 for i, n in enumerate(NODES)}  # all under the cap of 6
    a, b = Router(rng=random.Random(5)), Router(rng=random.Random(5))
    va, vb = view(), view()
    for r in (a, b):
        r.update(widths=widths, peers_in_flight=remote)
    first_a = [a.candidates(k, va, T)[0] for k in keys]
    first_b = [b.candidates(k, vb, T)[0] for k in keys]
    assert first_a == first_b
    # and the homes spread over the nodes
    assert max(Counter(first_a).values()) < 1.2 * len(keys) / len(NODES)


def test_an_idle_function_goes_to_its_home_and_the_list_is_the_views_own() -> None:
    r, v = Router(), view()
    order = v.candidates("f")
    got = r.candidates("f", v, T)
    assert got is order  # no allocation on the common path
    assert list(got) == list(order)


def test_one_node_or_none() -> None:
    r = Router()
    assert list(r.candidates("f", view(NODES[:1]), T)) == NODES[:1]
    assert list(r.candidates("f", view([]), T)) == []


def test_within_the_hot_set_the_least_loaded_node_is_chosen_ties_to_the_home() -> None:
    r, v = Router(RouterPolicy(choice="least")), view()
    order = v.candidates("f")
    r.update(widths={"f": 3})
    assert list(r.candidates("f", v, T)) == order  # all idle: the home, then the order
    busy(r, order[0], 2)
    busy(r, order[1], 1)
    got = r.candidates("f", v, T)
    assert got[0] == order[2]
    assert got[:3] == [order[2], order[1], order[0]]  # the rest of the hot set by load
    assert got[3:] == order[3:]  # then the rest of the rendezvous order
    # other peers' calls count too
    r.update(peers_in_flight={order[2]: 5})
    assert r.candidates("f", v, T)[0] == order[1]


def test_a_light_load_stays_on_the_home_node() -> None:
    r, v = Router(), view()
    order = v.candidates("f")
    busy(r, order[0], 5, key="f")  # 5 in flight, below the load floor of 6
    assert r.candidates("f", v, T)[0] == order[0]


def test_bounded_load_overflows_along_the_keys_order() -> None:
    r, v = Router(RouterPolicy(balance_factor=1.25, load_floor=1, choice="least")), view()
    order = v.candidates("f")
    busy(r, order[0], 20)  # 20 in flight over 10 nodes: cap ceil(1.25 * 21 / 10) = 3
    assert r.cap(10) == 3
    got = r.candidates("f", v, T)
    assert got[0] == order[1]
    assert got[1] == order[0]  # the full home is still tried before the rest
    busy(r, order[1], 3)
    assert r.candidates("f", v, T)[0] == order[2]


def test_no_node_ends_above_c_times_the_average() -> None:
    """One very hot function among cold ones: bounded load caps its home."""
    r, v = Router(RouterPolicy(load_floor=1)), view()
    loads: Counter[str] = Counter()
    rng = random.Random(3)
    keys = ["hot"] * 300 + [f"cold{i}" for i in range(300)]
    rng.shuffle(keys)
    for key in keys:
        node = r.candidates(key, v, T)[0]
        r.call_started(key, node)
        loads[node] += 1
    average = sum(loads.values()) / len(NODES)
    assert max(loads.values()) <= 1.25 * average + 1


def test_avoided_and_full_nodes_go_last() -> None:
    backoff = Backoff()
    r, v = Router(backoff=backoff), view()
    order = v.candidates("f")
    backoff.busy("f", order[0], T)
    got = r.candidates("f", v, T + 0.1)
    assert got[0] == order[1]  # the next node in the function's order
    assert got[-1] == order[0]
    assert sorted(got) == sorted(order)
    assert r.candidates("g", v, T + 0.1)[0] == v.candidates("g")[0]  # other functions unaffected
    assert r.candidates("f", v, T + 1.0)[0] == order[0]  # the avoidance is over: probe it
    r.update(capacity={order[0]: NodeCapacity(8, used=0.99)})
    assert r.candidates("f", v, T + 5)[-1] == order[0]


def test_avoided_nodes_in_the_tail_go_last_too() -> None:
    backoff = Backoff()
    r, v = Router(backoff=backoff), view()
    order = v.candidates("f")
    r.update(widths={"f": 2})
    backoff.busy("f", order[3], T)
    backoff.busy("f", order[1], T)
    got = r.candidates("f", v, T)
    assert got == [order[0], order[2], *order[4:], order[1], order[3]]


def test_larger_nodes_take_more_when_capacity_is_known() -> None:
    r, v = Router(RouterPolicy(choice="least")), view()
    order = v.candidates("f")
    r.update(widths={"f": 2}, capacity={order[0]: NodeCapacity(8), order[1]: NodeCapacity(32)})
    busy(r, order[0], 2)
    busy(r, order[1], 4)  # 4 of 32 slots is lighter than 2 of 8
    assert r.candidates("f", v, T)[0] == order[1]


def test_a_busy_answer_observed_by_the_router_moves_the_function() -> None:
    r, v = Router(), view()
    order = v.candidates("f")
    r.call_started("f", order[0])
    assert r.local_in_flight(order[0]) == 1
    r.call_finished("f", order[0], 503, None, T, retry_after_s=15.0)
    assert r.local_in_flight(order[0]) == 0
    assert r.candidates("f", v, T + 0.5)[0] == order[1]
    r.call_started("f", order[1])
    r.call_finished("f", order[1], 200, 0.01, T + 0.6)
    r.call_finished("f", order[1], 200, 0.01, T + 0.6)  # an extra finish cannot go negative
    assert r.local_in_flight(order[1]) == 0
    assert r.cap(10) == 12  # the floor: 1.5 x 8 slots


def test_two_choices_picks_the_lighter_of_two_hot_nodes() -> None:
    r, v = Router(RouterPolicy(choice="p2c"), rng=random.Random(7)), view()
    order = v.candidates("f")
    r.update(widths={"f": 4})
    busy(r, order[0], 5)  # over a third of the floor (12): loads are compared, not a coin
    picks = Counter(r.candidates("f", v, T)[0] for _ in range(2000))
    assert set(picks) <= set(order[:4])
    assert picks[order[0]] == 0  # the busiest of four never wins a pair
    assert min(picks[n] for n in order[1:4]) > 200
    # without a generator a seeded one is used: still two choices
    r = Router()
    r.update(widths={"f": 4})
    busy(r, order[0], 5)
    assert {r.candidates("f", v, T)[0] for _ in range(200)} == set(order[1:4])
    # lightly loaded (under a third of the floor): a coin between the two, whatever the load
    r = Router(RouterPolicy(choice="p2c"), rng=random.Random(7))
    r.update(widths={"f": 2})
    busy(r, order[0], 2)
    picks = Counter(r.candidates("f", v, T)[0] for _ in range(2000))
    assert 800 < picks[order[0]] < 1200


def test_bad_policies_are_refused() -> None:
    for bad in (
        RouterPolicy(balance_factor=0.9),
        RouterPolicy(load_floor=-1),
        RouterPolicy(slots_per_node=0),
        RouterPolicy(min_width=0),
        RouterPolicy(full_at=0.0),
    ):
        with pytest.raises(LocalProtocolError):
            Router(bad)


def steady(t: float) -> dict[str, tuple[float, float]]:
    return {"f": (20.0, 0.05), **{f"bg{i}": (1.0, 0.05) for i in range(5)}}


@pytest.mark.slow
def test_a_saturated_node_loses_the_functions_new_calls_and_gets_them_back() -> None:
    """Node X, home of f (20 calls/s), is filled by 20 s calls of another function from 10 s
    to 30 s and answers f's calls 503 busy (after 0.5 s; a cold start takes 0.3 s).
    The peers move f to the next node of its order, probing X now and then, and give it back
    once X recovers. The back-off is shared: the peers that never saw a 503 avoid X too."""
    # the only steady function: widths by concurrency alone, not spread for balance
    sim = RoutingSim(
        nodes=5,
        peers=3,
        seed=4,
        pool=PoolConfig(max_wait_s=0.5),
        width_policy=WidthPolicy(call_share=0.0),
    )
    order = sim.view.candidates("f")
    home, spill = order[0], order[1]
    for k in range(8):
        sim.send_direct(10.0 + 0.001 * k, sim.index[home], "hog", 20.0)
    sim.run(100.0, steady)

    def share(node: str, start: float, end: float) -> float:
        picks = [n for t, _p, fn, n in sim.record.first_choice if fn == "f" and start <= t < end]
        return picks.count(node) / len(picks)

    # (calls waiting on the first cold start may overflow the load floor for a moment)
    assert share(home, 0.0, 10.0) > 0.85
    assert share(home, 11.0, 30.0) < 0.1  # only probes
    # the next nodes of f's order: the calls that waited at X for their 503 count as f's
    # in flight and widen its hot set to two to four nodes for a while (real Peers: three)
    assert sum(share(n, 11.0, 30.0) for n in order[1:4]) > 0.85
    assert share(spill, 11.0, 30.0) > 0.25  # lightly loaded: p2c tosses a coin among them
    # recovered: the back-off ends within 15 s; the calls that waited for their 503 at X
    # counted as f's in-flight and widened f to two or three nodes, so X first shares f with
    # the next nodes, then has it alone again once the width's 60 s window has passed
    assert share(home, 40.0, 70.0) > 0.2  # one of two to four lightly loaded nodes
    assert share(home, 85.0, 100.0) > 0.95
    assert sim.record.failed == 0  # every refused call was placed on another node
    assert sim.record.busy_503 < 40  # ~400 calls of f in 20 s: avoiding beats retrying


def test_the_floor_follows_the_nodes_size() -> None:
    r, v = Router(), view()
    assert r.cap(10) == 12  # 1.5 x 8 slots
    r.update(capacity={n: NodeCapacity(16) for n in NODES})
    assert r.cap(10) == 24  # 1.5 x 16 slots
    order = v.candidates("f")
    busy(r, order[0], 20)
    assert r.candidates("f", v, T)[0] == order[0]  # 20 calls on 16 slots: not refused yet
    assert Router(RouterPolicy(load_floor=2)).cap(10) == 2


def test_the_simulators_zipf_workload_and_summary() -> None:
    work = zipf_workload(10, 100.0, 0.05, burst=(0, 10.0, 5.0, 6.0))
    assert sum(rate for rate, _e in work(0.0).values()) == pytest.approx(100.0)
    assert work(5.5)["fn0"][0] == pytest.approx(10 * work(0.0)["fn0"][0])
    sim = RoutingSim(nodes=3, peers=2, seed=1)
    sim.run(3.0, work)
    row = sim.record.summary()
    assert row["calls"] > 200
    assert row["failed"] == 0
    assert 0 < row["cold_pct"] < 100
