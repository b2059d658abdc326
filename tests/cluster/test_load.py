"""Shared load in virtual time: local figures, expiry, digests, and the cluster-wide sums that
every peer must compute alike."""

from __future__ import annotations

import heapq
import itertools
import math
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fnlb.cluster.load import (
    COLD,
    COUNT_GRID,
    HISTORY,
    IDLE,
    RATE_GRID,
    ClusterLoad,
    LocalLoad,
    WidthInputs,
    grid_floor,
    grid_level,
)
from fnlb.errors import LocalProtocolError, RemoteProtocolError
from fnlb.payloads.load_digest import FULL_BUDGET_BYTES, GOSSIP_BUDGET_BYTES, decode_digest

T0 = 1_800_000_000.0  # Unix-like origin: weights must not overflow far from 0
TAU = 3.0


def steady(
    load: LocalLoad,
    fn: str,
    node: str,
    rate: float,
    start: float,
    duration: float,
    *,
    status: int = 200,
    wait_s: float | None = None,
    ttfb_s: float | None = 0.01,
) -> float:
    """Calls at exactly `rate`/s from `start` for `duration`, each finishing at once;
    returns the time of the last call."""
    n = round(rate * duration)
    t = start
    for k in range(n):
        t = start + k / rate
        load.call_started(fn, node, t)
        load.call_finished(fn, node, status, wait_s, ttfb_s, t)
    return t


# --- local figures --------------------------------------------------------------------------


@pytest.mark.parametrize("rate", [0.5, 2.0, 20.0, 300.0])
def test_rate_converges_to_the_true_rate_of_steady_traffic(rate: float) -> None:
    load = LocalLoad(time_constant_s=TAU)
    last = steady(load, "r/a/f", "n1", rate, T0, 15 * TAU + 10 / rate)
    # read half-way between two calls, where a steady stream's estimate is unbiased
    now = last + 0.5 / rate
    got = load.function_load("r/a/f", now).rate
    assert got == pytest.approx(rate, rel=0.03)
    assert load.node_load("n1", now).rate == pytest.approx(got)


def test_rate_follows_a_step_with_the_documented_time_constant() -> None:
    load = LocalLoad(time_constant_s=TAU)
    last = steady(load, "f", "n1", 100.0, T0, 10 * TAU)
    # calls stop: the estimate decays by e every tau seconds
    at_stop = load.function_load("f", last).rate
    assert load.function_load("f", last + TAU).rate == pytest.approx(at_stop / math.e)
    assert load.function_load("f", last + 5 * TAU).rate < 1.0
    # calls resume at 10/s: 63 % of the way there after one tau
    start = last + 60.0
    last = steady(load, "f", "n1", 10.0, start, TAU)
    assert load.function_load("f", start + TAU).rate == pytest.approx(
        10 * (1 - 1 / math.e), rel=0.1
    )


def test_in_flight_counts_are_exact_per_pair_function_and_node() -> None:
    load = LocalLoad()
    for _ in range(5):
        load.call_started("f", "n1", T0)
    for _ in range(2):
        load.call_started("f", "n2", T0)
    load.call_started("g", "n1", T0)
    for _ in range(3):
        load.call_finished("f", "n1", 200, None, 0.01, T0 + 1)
    assert load.in_flight("f", "n1") == 2
    assert load.in_flight("f", "n2") == 2
    assert load.in_flight("f") == 4
    assert load.in_flight("missing") == 0
    assert load.in_flight("f", "n3") == 0
    assert load.node_in_flight("n1") == 3
    assert load.node_in_flight("n9") == 0
    fl = load.function_load("f", T0 + 1)
    assert fl.in_flight == 4
    assert {n: s.in_flight for n, s in fl.nodes.items()} == {"n1": 2, "n2": 2}


def test_finishing_a_call_that_never_started_is_a_local_error() -> None:
    load = LocalLoad()
    with pytest.raises(LocalProtocolError):
        load.call_finished("f", "n1", 200, None, None, T0)
    load.call_started("f", "n1", T0)
    load.call_finished("f", "n1", 200, None, None, T0)
    with pytest.raises(LocalProtocolError):
        load.call_finished("f", "n1", 200, None, None, T0)


def test_wait_comes_from_the_header_when_present_else_time_to_first_byte() -> None:
    load = LocalLoad()
    steady(load, "hdr", "n1", 10.0, T0, 5.0, wait_s=0.5, ttfb_s=0.02)
    steady(load, "ttfb", "n1", 10.0, T0, 5.0, wait_s=None, ttfb_s=0.02)
    now = T0 + 5.0
    assert load.function_load("hdr", now).wait == pytest.approx(0.5)
    assert load.function_load("ttfb", now).wait == pytest.approx(0.02)
    # node wait is the mean over its calls
    assert load.node_load("n1", now).wait == pytest.approx(0.26)


def test_errors_without_the_header_and_busy_answers_give_no_wait_sample() -> None:
    load = LocalLoad()
    steady(load, "f", "n1", 10.0, T0, 2.0, ttfb_s=0.05)
    steady(load, "f", "n1", 10.0, T0 + 2, 2.0, status=504, ttfb_s=30.0)  # ran, timed out
    steady(load, "f", "n1", 10.0, T0 + 4, 2.0, status=503, ttfb_s=0.001)
    steady(load, "f", "n1", 10.0, T0 + 6, 2.0, status=200, wait_s=float("nan"))
    steady(load, "f", "n1", 10.0, T0 + 8, 2.0, status=200, wait_s=-1.0, ttfb_s=None)
    assert load.function_load("f", T0 + 10).wait == pytest.approx(0.05)


def test_busy_503s_are_counted_as_a_rate() -> None:
    load = LocalLoad(time_constant_s=TAU)
    # 40 calls/s of which one in four is answered 503
    t = T0
    for k in range(40 * 30):
        t = T0 + k / 40
        load.call_started("f", "n1", t)
        load.call_finished("f", "n1", 503 if k % 4 == 0 else 200, None, 0.01, t)
    fl = load.function_load("f", t + 1 / 80)
    assert fl.rate == pytest.approx(40.0, rel=0.03)
    assert fl.busy_rate == pytest.approx(10.0, rel=0.05)
    assert load.node_load("n1", t).busy_rate == pytest.approx(fl.busy_rate, rel=0.01)


def test_weights_stay_finite_and_right_over_a_long_run_without_sweeps() -> None:
    load = LocalLoad(time_constant_s=0.5)
    # 4,000 time constants: exp() would overflow after ~700 without moving the landmark
    last = T0
    for k in range(40_000):
        last = T0 + k / 20
        load.call_started("f", "n1", last)
        load.call_finished("f", "n1", 200, 0.1, None, last)
    fl = load.function_load("f", last + 1 / 40)
    assert math.isfinite(fl.rate)
    assert fl.rate == pytest.approx(20.0, rel=0.02)
    assert fl.wait == pytest.approx(0.1)


def test_sweeps_move_the_landmark_without_changing_what_is_read() -> None:
    swept, unswept = LocalLoad(time_constant_s=1.0), LocalLoad(time_constant_s=1.0)
    for k in range(100):
        for load in (swept, unswept):
            load.call_started("f", "n1", T0 + 60.0 * k)
            load.call_finished("f", "n1", 200, 0.25, None, T0 + 60.0 * k + 0.5)
        swept.sweep(T0 + 60.0 * k + 1)
    now = T0 + 60.0 * 99 + 2
    a, b = swept.function_load("f", now), unswept.function_load("f", now)
    assert (a.rate, a.wait) == pytest.approx((b.rate, b.wait), rel=1e-9)
    assert a.rate == pytest.approx(math.exp(-2.0))
    assert swept.node_load("n1", now).wait == pytest.approx(0.25)


# --- expiry ---------------------------------------------------------------------------------


def test_sweep_drops_idle_functions_and_keeps_active_ones() -> None:
    load = LocalLoad(expire_after_s=120.0)
    steady(load, "idle", "n1", 5.0, T0, 10.0)
    steady(load, "active", "n2", 1.0, T0, 200.0)
    load.call_started("long-call", "n3", T0)  # still in flight: never expires
    assert load.function_count == 3
    assert load.sweep(T0 + 100.0) == 0
    assert load.sweep(T0 + 200.0) == 1
    assert load.function_count == 2
    assert load.function_load("idle", T0 + 200) == IDLE
    assert load.function_load("active", T0 + 200).rate > 0.5
    assert load.in_flight("long-call") == 1
    assert load.node_count == 2  # n1 had only the idle function: its totals went with it
    load.call_finished("long-call", "n3", 200, None, 300.0, T0 + 300.0)
    assert load.sweep(T0 + 300.0 + 121.0) == 2
    assert (load.function_count, load.cell_count, load.node_count) == (0, 0, 0)


def test_sweep_drops_a_function_idle_node_but_keeps_the_function() -> None:
    load = LocalLoad(expire_after_s=60.0)
    steady(load, "f", "old", 5.0, T0, 10.0)
    steady(load, "f", "new", 5.0, T0 + 10, 100.0)
    assert load.sweep(T0 + 110.0) == 0
    assert set(load.function_load("f", T0 + 110).nodes) == {"new"}
    assert load.node_count == 1


def test_a_sweep_limit_spreads_the_work_and_still_reaches_everything() -> None:
    load = LocalLoad(expire_after_s=10.0)
    for k in range(100):
        load.call_started(f"f{k}", "n1", T0)
        load.call_finished(f"f{k}", "n1", 200, None, 0.01, T0)
    dropped = [load.sweep(T0 + 20.0, limit=30) for _ in range(4)]
    assert dropped == [30, 30, 30, 10]
    assert load.function_count == 0


def test_max_functions_evicts_idle_ones_rather_than_growing() -> None:
    load = LocalLoad(max_functions=50)
    for k in range(200):
        load.call_started(f"f{k}", "n1", T0 + k)
        load.call_finished(f"f{k}", "n1", 200, None, 0.01, T0 + k)
    assert load.function_count == 50
    assert load.evicted == 150
    assert load.in_flight("f199") == 0
    assert load.function_load("f199", T0 + 200).rate > 0


def test_bad_settings_are_refused() -> None:
    with pytest.raises(LocalProtocolError):
        LocalLoad(time_constant_s=0)
    with pytest.raises(LocalProtocolError):
        ClusterLoad(stale_after_s=1.0, in_flight_ttl_s=2.0)


# --- digests of real figures ----------------------------------------------------------------


def busy_peer(n_functions: int = 10_000, n_nodes: int = 200, *, epoch: int = 1) -> LocalLoad:
    """A peer with Zipf-like rates over `n_functions`, each on 2 or 3 nodes."""
    load = LocalLoad(epoch=epoch)
    for k in range(n_functions):
        fn = f"r/app{k % 300}/route{k}"
        calls = max(1, 2000 // (k + 1))
        for j in range(2 + k % 2):
            node = f"10.1.{(k * 7 + j) % n_nodes // 100}.{(k * 7 + j) % n_nodes % 100}:8080"
            for c in range(calls):
                t = T0 + c * 0.001
                load.call_started(fn, node, t)
                load.call_finished(fn, node, 200, None, 0.01, t)
        if k % 10 == 0:
            load.call_started(fn, node, T0 + 1)  # some in flight
    return load


@pytest.fixture(scope="module")
def peer10k() -> LocalLoad:
    return busy_peer()


def test_the_gossip_digest_of_10k_functions_fits_its_budget_with_the_hottest_in_full(
    peer10k: LocalLoad,
) -> None:
    now = T0 + 2
    data = peer10k.digest(now, GOSSIP_BUDGET_BYTES)
    assert len(data) <= GOSSIP_BUDGET_BYTES
    d = decode_digest(data)
    assert len(d.functions) >= 4
    assert len(d.functions) + len(d.totals) >= 20
    local = {
        fn: peer10k.function_load(fn, now)
        for fn in (f"r/app{k % 300}/route{k}" for k in range(10_000))
    }
    hottest = sorted(local, key=lambda fn: -(local[fn].rate + local[fn].in_flight))
    assert list(d.functions) == hottest[: len(d.functions)]
    listed = len(d.functions) + len(d.totals)
    assert set(d.functions) | set(d.totals) == set(hottest[:listed])
    for fn, cells in d.functions.items():
        assert set(cells) == set(local[fn].nodes)
        assert sum(r[0] for r in cells.values()) == pytest.approx(local[fn].rate * 100, abs=3)
    for fn, (rate_c, in_flight, _w, _b) in d.totals.items():
        assert rate_c == pytest.approx(local[fn].rate * 100, abs=3)
        assert in_flight == local[fn].in_flight
    assert d.rest.count == 10_000 - listed


def test_the_full_digest_lists_every_function(peer10k: LocalLoad) -> None:
    now = T0 + 2
    data = peer10k.digest(now, FULL_BUDGET_BYTES)
    assert len(data) <= FULL_BUDGET_BYTES
    d = decode_digest(data)
    assert len(d.functions) == 10_000
    assert not d.totals
    assert d.rest.count == 0
    assert len(d.nodes) == 200
    assert sum(r[1] for r in d.nodes.values()) == 1000


def test_each_digest_takes_the_next_sequence_number() -> None:
    load = LocalLoad(epoch=5)
    orders = [decode_digest(load.digest(T0)).order for _ in range(3)]
    assert orders == [(5, 1), (5, 2), (5, 3)]


# --- the cluster-wide view ------------------------------------------------------------------


def three_peers(now: float) -> list[tuple[str, LocalLoad]]:
    peers = []
    for p, rate in (("a", 10.0), ("b", 20.0), ("c", 30.0)):
        load = LocalLoad(epoch=1, time_constant_s=TAU)  # smooth: read between calls
        steady(load, "hot", "n1", rate, now - 30, 30.0)
        steady(load, "hot", "n2", rate / 2, now - 30, 30.0)
        steady(load, f"only-{p}", "n3", 1.0, now - 30, 30.0)
        for _ in range(3):
            load.call_started("hot", "n1", now - 30)  # long calls, still in flight
        peers.append((p, load))
    return peers


def test_merging_three_peers_gives_the_sum_of_their_figures() -> None:
    now = T0 + 100
    cluster = ClusterLoad()
    locals_ = three_peers(now)
    for p, load in locals_:
        assert cluster.merge(p, load.digest(now), now)
    fl = cluster.function_load("hot", now)
    expect_rate = sum(load.function_load("hot", now).rate for _p, load in locals_)
    assert fl.rate == pytest.approx(expect_rate, abs=0.05)
    assert fl.rate == pytest.approx(90.0, rel=0.03)
    assert fl.in_flight == 9
    assert fl.complete
    assert set(fl.nodes) == {"n1", "n2"}
    assert fl.nodes["n1"].rate == pytest.approx(60.0, rel=0.03)
    assert fl.nodes["n1"].in_flight == 9
    assert fl.wait == pytest.approx(0.01)
    assert cluster.node_load("n1", now).rate == pytest.approx(60.0, rel=0.03)
    assert cluster.function_load("only-b", now).rate == pytest.approx(1.0, rel=0.2)
    assert cluster.function_load("nowhere", now).rate == 0.0
    assert cluster.peers(now) == ["a", "b", "c"]
    assert [fn for fn, _r in cluster.hot_functions(2, now)] == ["hot", "only-a"]


def test_a_newer_digest_replaces_an_older_one_and_an_older_one_is_ignored() -> None:
    now = T0 + 100
    load = LocalLoad(epoch=1)
    steady(load, "f", "n1", 10.0, now - 30, 30.0)
    old = load.digest(now)
    steady(load, "f", "n1", 50.0, now, 30.0)
    new = load.digest(now + 30)
    cluster = ClusterLoad()
    assert cluster.merge("a", new, now + 30)
    assert not cluster.merge("a", old, now + 30)  # late, reordered delivery
    assert not cluster.merge("a", new, now + 30)  # duplicate
    assert cluster.function_load("f", now + 30).rate == pytest.approx(50.0, rel=0.05)
    # a restarted peer (higher epoch) starts its sequence again and still wins
    restarted = LocalLoad(epoch=2)
    steady(restarted, "f", "n1", 5.0, now + 30, 30.0)
    assert cluster.merge("a", restarted.digest(now + 60), now + 60)
    assert cluster.function_load("f", now + 60).rate == pytest.approx(5.0, rel=0.1)


def test_a_peer_restarted_with_the_same_epoch_is_heard_once_its_old_digest_is_stale() -> None:
    now = T0
    first = LocalLoad()
    steady(first, "f", "n1", 10.0, now - 30, 30.0)
    for _ in range(5):
        first.digest(now)
    cluster = ClusterLoad(stale_after_s=5.0)
    cluster.merge("a", first.digest(now), now)
    again = LocalLoad()  # seq starts at 1 again
    steady(again, "g", "n1", 10.0, now, 10.0)
    assert not cluster.merge("a", again.digest(now + 2), now + 2)
    assert cluster.merge("a", again.digest(now + 10), now + 10)
    assert cluster.function_load("g", now + 10).rate > 5.0


def test_in_flight_of_an_ageing_digest_is_dropped_then_the_whole_digest() -> None:
    now = T0
    load = LocalLoad()
    steady(load, "f", "n1", 10.0, now - 30, 30.0)
    for _ in range(4):
        load.call_started("f", "n1", now - 30)
    cluster = ClusterLoad(stale_after_s=5.0, in_flight_ttl_s=2.5)
    cluster.merge("a", load.digest(now), now)
    assert cluster.function_load("f", now + 2.5).in_flight == 4
    later = cluster.function_load("f", now + 3.0)
    assert later.in_flight == 0
    assert later.rate == pytest.approx(10.0, rel=0.05)
    assert cluster.function_load("f", now + 5.5) == cluster.function_load("nothing", now)
    assert cluster.peers(now + 5.5) == []
    version = cluster.version
    assert cluster.expire(now + 5.5) == ["a"]
    assert cluster.version > version
    assert cluster.expire(now + 5.5) == []


def test_a_peer_that_leaves_takes_its_digest_with_it() -> None:
    now = T0 + 100
    cluster = ClusterLoad()
    sent = {}
    for p, load in three_peers(now):
        sent[p] = load.digest(now)
        cluster.merge(p, sent[p], now)
    assert cluster.peer_left("b", now)
    assert not cluster.peer_left("b", now)
    assert not cluster.merge("b", sent["b"], now + 1)  # a late copy still being gossiped
    assert cluster.peers(now) == ["a", "c"]
    assert cluster.function_load("hot", now).rate == pytest.approx(60.0, rel=0.03)
    assert cluster.function_load("only-b", now).rate == 0.0


def test_a_malformed_digest_is_a_remote_error_and_changes_nothing() -> None:
    cluster = ClusterLoad()
    with pytest.raises(RemoteProtocolError):
        cluster.merge("a", b"\x97garbage", T0)
    assert cluster.version == 0
    assert cluster.peers(T0) == []


def test_a_function_lumped_by_some_peer_is_reported_incomplete() -> None:
    now = T0 + 100
    load = LocalLoad()
    names = [f"r/app/function-with-a-long-name-{k:04d}" for k in range(200)]
    for k, fn in enumerate(names):
        steady(load, fn, f"node{k % 50}", 5.0 + k / 100, now - 10, 10)
    data = load.digest(now, 300)
    cluster = ClusterLoad()
    cluster.merge("a", data, now)
    d = decode_digest(data)
    assert d.functions
    assert d.totals
    by_totals = next(iter(d.totals))
    lumped = next(fn for fn in names if fn not in d.functions and fn not in d.totals)
    fl = cluster.function_load(by_totals, now)
    assert fl.complete
    assert fl.rate == pytest.approx(load.function_load(by_totals, now).rate, abs=0.01)
    assert not fl.nodes  # no per-node breakdown for a function listed by its totals
    assert cluster.width_inputs(by_totals, now).rate_level > 0
    assert not cluster.function_load(lumped, now).complete
    assert cluster.width_inputs(lumped, now) == COLD
    summary = cluster.summary(now)
    local_rate = sum(load.node_load(f"node{j}", now).rate for j in range(50))
    assert summary.rate_c == pytest.approx(local_rate * 100, abs=50)  # the lumps included


def test_peers_holding_the_same_digests_compute_identical_width_inputs() -> None:
    now = T0 + 100
    digests = [(p, load.digest(now)) for p, load in three_peers(now)]
    x, y = ClusterLoad(), ClusterLoad()
    for p, d in digests:
        x.merge(p, d, now)
    for p, d in reversed(digests):  # other order, slightly later
        y.merge(p, d, now + 0.3)
    for fn in ("hot", "only-a", "only-c", "absent"):
        assert x.width_inputs(fn, now + 1) == y.width_inputs(fn, now + 1.3)
    assert x.width_table(10, now + 1) == y.width_table(10, now + 1.3)
    assert x.summary(now + 1).checksum() == y.summary(now + 1.3).checksum()
    w = x.width_inputs("hot", now + 1)
    assert w.peers == 3
    assert w.rate <= x.function_load("hot", now + 1).rate < w.rate * 2**0.25
    assert w.in_flight == 8  # 9 in flight, on the grid 8, 10, 11, ...
    assert w.wait == pytest.approx(0.01, rel=0.2)
    assert w.busy_rate == 0.0


def test_a_small_change_in_one_digest_rarely_changes_the_level() -> None:
    # 1 % more traffic on one peer moves the rate level only when it straddles a threshold
    levels = set()
    for rate_c in range(5000, 5050):
        levels.add(grid_level(rate_c, RATE_GRID))
    assert len(levels) <= 2


@pytest.mark.parametrize(
    ("units", "level", "floor"),
    [
        (0, 0, 0),
        (9, 0, 0),
        (10, 1, 10),
        (11, 1, 10),
        (12, 2, 12),
        (20, 5, 20),
        (100, 14, 95),
        (113, 15, 113),
    ],
)
def test_rate_grid_levels_are_fixed_integers(units: int, level: int, floor: int) -> None:
    assert grid_level(units, RATE_GRID) == level
    assert grid_floor(level, RATE_GRID) == floor


def test_count_grid_is_exact_for_small_counts_then_geometric() -> None:
    assert COUNT_GRID[:12] == (1, 2, 3, 4, 5, 6, 7, 8, 10, 11, 13, 16)
    ratios = [b / a for a, b in itertools.pairwise(COUNT_GRID[20:])]
    assert all(1.15 < r < 1.25 for r in ratios)
    assert WidthInputs(0, 0, 0, 0, 0) == COLD


# --- three peers gossiping in virtual time --------------------------------------------------


class Sim:
    """Three peers proxying calls, publishing a digest every 0.3 s that reaches each other peer
    after 50-400 ms; each of up to 3 transmissions 200 ms apart is lost with `loss`."""

    PEERS = ("a", "b", "c")

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.local = {p: LocalLoad(epoch=1, time_constant_s=TAU) for p in self.PEERS}
        self.cluster = {p: ClusterLoad() for p in self.PEERS}
        self.ends: list[tuple[float, int, str, str, str]] = []  # (end, tie, peer, fn, node)
        self.mail: list[tuple[float, int, str, str, bytes]] = []  # (at, tie, to, from, data)
        self.tie = 0
        self.now = 0.0
        self.next_digest = {p: 0.1 * i for i, p in enumerate(self.PEERS)}
        self.duration = 0.2
        self.loss = 0.1
        self.skew_ms = {p: self.rng.uniform(-5.0, 5.0) for p in self.PEERS}  # NTP-grade clocks

    def wall_ms(self, peer: str) -> int:
        """`peer`'s wall clock in ms since the Unix epoch."""
        return round(T0 * 1000 + self.now * 1000 + self.skew_ms[peer])

    def run_until(self, until: float, rate_per_peer: float) -> None:
        """Poisson arrivals at about `rate_per_peer`/s on each peer (10 ms steps), swinging
        ±30 % over 20 s; exponential call durations averaging `self.duration`."""
        while self.now < until:
            self.now = round(self.now + 0.01, 9)
            swing = 1.0 + 0.3 * math.sin(self.now * math.pi / 10)
            for k, p in enumerate(self.PEERS):
                if self.rng.random() < rate_per_peer * swing * 0.01:
                    self.tie += 1
                    node = f"n{self.tie % 3}"
                    self.local[p].call_started("hot", node, self.now)
                    end = self.now + self.rng.expovariate(1.0 / self.duration)
                    heapq.heappush(self.ends, (end, self.tie, p, "hot", node))
                if self.rng.random() < 0.05:
                    self.tie += 1
                    cold = f"cold{self.tie % 30}-{k}"
                    self.local[p].call_started(cold, "n9", self.now)
                    heapq.heappush(self.ends, (self.now + 0.05, self.tie, p, cold, "n9"))
            while self.ends and self.ends[0][0] <= self.now:
                end, _t, p, fn, node = heapq.heappop(self.ends)
                self.local[p].call_finished(fn, node, 200, None, 0.01, end)
            for p in self.PEERS:
                if self.next_digest[p] <= self.now:
                    self.next_digest[p] += 0.3
                    data = self.local[p].digest(self.now, stamp_ms=self.wall_ms(p))
                    self.cluster[p].merge(p, data, self.now)
                    for q in self.PEERS:
                        if q == p:
                            continue
                        for attempt in range(3):  # gossip retransmits a broadcast
                            if self.rng.random() > self.loss:
                                self.tie += 1
                                at = self.now + 0.2 * attempt + self.rng.uniform(0.05, 0.4)
                                heapq.heappush(self.mail, (at, self.tie, q, p, data))
                                break
            while self.mail and self.mail[0][0] <= self.now:
                _at, _t, q, p, data = heapq.heappop(self.mail)
                self.cluster[q].merge(p, data, self.now)

    def truth(self) -> tuple[float, int]:
        loads = [self.local[p].function_load("hot", self.now) for p in self.PEERS]
        return sum(fl.rate for fl in loads), sum(fl.in_flight for fl in loads)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_every_peer_knows_a_hot_functions_cluster_load_within_two_seconds(seed: int) -> None:
    sim = Sim(seed)
    sim.run_until(20.0, 40.0)
    for step in range(100):  # 10 s of traffic, sampled every 100 ms
        sim.run_until(20.0 + 0.1 * (step + 1), 40.0)
        rate, in_flight = sim.truth()
        for p in sim.PEERS:
            fl = sim.cluster[p].function_load("hot", sim.now)
            assert fl.rate == pytest.approx(rate, rel=0.15)
            assert fl.in_flight == pytest.approx(in_flight, abs=30)
            settled = sim.cluster[p].function_load("hot", sim.now, sim.wall_ms(p) - 1000)
            assert settled.rate == pytest.approx(rate, rel=0.2)  # a second older
    # calls now take 1 s instead of 0.2 s: in-flight grows five-fold over the next second, and
    # every peer sees the new level 2 s later
    sim.duration = 1.0
    sim.run_until(sim.now + 1.0, 40.0)
    sim.run_until(sim.now + 2.0, 40.0)
    _rate, in_flight = sim.truth()
    assert in_flight > 60
    for p in sim.PEERS:
        assert sim.cluster[p].function_load("hot", sim.now).in_flight >= 0.7 * in_flight


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_settled_reads_make_peers_compute_identical_width_inputs(seed: int) -> None:
    sim = Sim(seed)
    sim.run_until(20.0, 40.0)
    fresh_agree = settled_agree = summary_agree = 0
    for step in range(100):
        sim.run_until(20.0 + 0.1 * (step + 1), 40.0)
        fresh, settled, summaries = set(), set(), set()
        for p in sim.PEERS:
            view = sim.cluster[p]
            settled_ms = sim.wall_ms(p) - 1000
            fresh.add(view.width_inputs("hot", sim.now))
            settled.add(view.width_inputs("hot", sim.now, settled_ms))
            summaries.add(view.summary(sim.now, settled_ms=settled_ms).checksum())
        fresh_agree += len(fresh) == 1
        settled_agree += len(settled) == 1
        summary_agree += len(summaries) == 1
    # Fresh reads hold whichever digests arrived last and agree only now and then; settled
    # reads pick digests by their stamps and disagree only when a clock skew (here up to
    # 10 ms) straddles a stamp, or a digest is still missing after a second.
    assert fresh_agree < 60
    assert settled_agree >= 90
    assert summary_agree >= 85


def stamped(load: LocalLoad, now: float, stamp_ms: int) -> bytes:
    return load.digest(now, stamp_ms=stamp_ms)


def test_settled_reads_pick_each_peers_newest_digest_stamped_before_the_cut() -> None:
    load = LocalLoad(epoch=1)
    digests = []
    for k in range(5):  # 10, 20, 30, 40, 50 calls/s, one digest each at stamps 1000..5000
        steady(load, "f", "n1", 10.0 * (k + 1), T0 + 30 * k, 30.0)
        digests.append(stamped(load, T0 + 30 * (k + 1), 1000 * (k + 1)))
    x, y = ClusterLoad(), ClusterLoad()
    for d in digests:
        x.merge("a", d, T0)
    for d in [digests[4], digests[1], digests[3], digests[2], digests[0]]:  # late, reordered
        y.merge("a", d, T0 + 1)
    for cut, calls in ((1500, 10), (2000, 20), (3999, 30), (9000, 50)):
        for view in (x, y):
            rate = view.function_load("f", T0 + 1, settled_ms=cut).rate
            assert rate == pytest.approx(calls, rel=0.1)
        assert x.width_inputs("f", T0, cut) == y.width_inputs("f", T0 + 1, cut)
    # nothing stamped early enough, or the one that is is stale by stamps: no digest counted
    assert x.peers(T0, settled_ms=999) == []
    assert x.peers(T0, settled_ms=5000 + 5001) == []
    # fresh reads still use the newest
    assert y.function_load("f", T0 + 1).rate == pytest.approx(50.0, rel=0.1)


def test_settled_in_flight_and_staleness_go_by_stamps() -> None:
    load = LocalLoad()
    for _ in range(3):
        load.call_started("f", "n1", T0)
    view = ClusterLoad(stale_after_s=5.0, in_flight_ttl_s=2.5)
    view.merge("a", stamped(load, T0, 10_000), T0)
    assert view.function_load("f", T0 + 100, settled_ms=12_500).in_flight == 3
    assert view.function_load("f", T0 + 100, settled_ms=12_501).in_flight == 0
    assert view.peers(T0 + 100, settled_ms=15_000) == ["a"]
    assert view.peers(T0 + 100, settled_ms=15_001) == []


def test_each_peer_keeps_a_bounded_history_and_repeats_are_ignored() -> None:
    load = LocalLoad()
    steady(load, "f", "n1", 10.0, T0, 10.0)
    view = ClusterLoad()
    digests = [stamped(load, T0 + 10, 1000 + k) for k in range(HISTORY + 4)]
    assert all(view.merge("a", d, T0 + 10) for d in digests)
    assert not view.merge("a", digests[-1], T0 + 10)  # repeat
    assert not view.merge("a", digests[0], T0 + 10)  # older than all kept
    assert not view.merge("a", digests[5], T0 + 10)  # a repeat still kept
    oldest_kept = 1000 + 4  # the first four were pushed out
    assert view.peers(T0 + 10, settled_ms=oldest_kept - 1) == []
    assert view.peers(T0 + 10, settled_ms=oldest_kept) == ["a"]


def test_large_push_pull_digests_do_not_pile_up_in_the_history(peer10k: LocalLoad) -> None:
    view = ClusterLoad()
    full = [peer10k.digest(T0 + 2, FULL_BUDGET_BYTES, stamp_ms=1000 + k) for k in range(3)]
    for d in full:
        assert view.merge("a", d, T0 + 2)
    assert view.peers(T0 + 2, settled_ms=1001) == []  # the two older ones were let go
    assert view.peers(T0 + 2, settled_ms=1002) == ["a"]
    small = peer10k.digest(T0 + 2, stamp_ms=1003)
    assert view.merge("a", small, T0 + 2)
    assert view.peers(T0 + 2, settled_ms=1002) == ["a"]  # one large one stays with small ones
    assert view.function_load("r/app99/route9999", T0 + 2, settled_ms=1002).rate > 0


def test_unstamped_push_pull_digests_serve_fresh_reads_only() -> None:
    load = LocalLoad(epoch=1)
    steady(load, "f", "n1", 10.0, T0, 30.0)
    broadcast = stamped(load, T0 + 30, 5000)
    steady(load, "f", "n1", 40.0, T0 + 30, 30.0)
    push_pull = load.digest(T0 + 60, FULL_BUDGET_BYTES)  # newer, unstamped
    view = ClusterLoad()
    view.merge("a", broadcast, T0 + 60)
    assert view.merge("a", push_pull, T0 + 60)
    assert view.function_load("f", T0 + 60).rate == pytest.approx(40.0, rel=0.1)
    assert view.function_load("f", T0 + 60, settled_ms=6000).rate == pytest.approx(10, rel=0.1)


def peer_digests(peer_index: int, count: int) -> list[bytes]:
    """`count` stamped broadcasts of one peer whose traffic changes between them."""
    load = LocalLoad(epoch=1)
    out = []
    for k in range(count):
        at = T0 + 0.3 * k
        for j in range(1 + (k * 7 + peer_index) % 5):
            load.call_started(f"f{j}", f"n{(j + peer_index) % 3}", at)
        out.append(load.digest(at, stamp_ms=1_000_000 + 300 * k + peer_index))
    return out


ALL_DIGESTS = [(f"p{i}", d) for i in range(3) for d in peer_digests(i, HISTORY + 3)]


@settings(max_examples=60, deadline=None)
@given(st.permutations(ALL_DIGESTS), st.integers(1_000_000, 1_000_000 + 300 * (HISTORY + 4)))
def test_merge_order_does_not_change_any_read(
    order: list[tuple[str, bytes]], settled_ms: int
) -> None:
    reference, view = ClusterLoad(), ClusterLoad()
    for peer, d in ALL_DIGESTS:
        reference.merge(peer, d, T0)
    for peer, d in order:
        view.merge(peer, d, T0)
    for s in (None, settled_ms):
        assert view.summary(T0, settled_ms=s) == reference.summary(T0, settled_ms=s)
        for fn in ("f0", "f2", "f4"):
            assert view.function_load(fn, T0, s) == reference.function_load(fn, T0, s)


def test_a_peer_that_comes_back_is_heard_again() -> None:
    load = LocalLoad(epoch=1)
    steady(load, "f", "n1", 10.0, T0, 10.0)
    cluster = ClusterLoad()
    cluster.merge("a", load.digest(T0 + 10), T0 + 10)
    cluster.peer_left("a", T0 + 10)
    assert cluster.merge("a", load.digest(T0 + 11), T0 + 11)  # it was only suspected
    assert cluster.peer_left("a", T0 + 11)
    restarted = LocalLoad(epoch=2)
    steady(restarted, "g", "n1", 10.0, T0 + 11, 1.0)
    assert cluster.merge("a", restarted.digest(T0 + 12), T0 + 12)
    assert cluster.peers(T0 + 12) == ["a"]
    cluster.peer_left("a", T0 + 12)
    assert cluster.expire(T0 + 20) == []
    old = LocalLoad(epoch=2)  # same epoch, sequence from 1 again: heard once the memory lapses
    assert cluster.merge("a", old.digest(T0 + 20), T0 + 20)


def test_a_new_functions_rate_is_right_from_its_first_calls() -> None:
    """A young record is divided by the weight it has had: no climb over a few tau."""
    load = LocalLoad()  # the default time constant, 1 s
    last = steady(load, "new", "n1", 20.0, T0, 0.6)
    now = last + 0.025  # half-way to the next call
    assert load.function_load("new", now).rate == pytest.approx(20.0, rel=0.15)
    assert load.node_load("n1", now).rate == pytest.approx(20.0, rel=0.15)
    assert decode_digest(load.digest(now)).functions["new"]["n1"][0] == pytest.approx(
        2000, rel=0.15
    )
    lone = LocalLoad()
    lone.call_started("once", "n1", T0)
    assert lone.function_load("once", T0).rate <= 1 / (1 - math.exp(-0.5)) + 1e-9  # floored
    # once old, a record reads the plain decayed count: steps of a known function take tau
    assert load._young(T0, T0 + 7 * load.tau) == 1.0
