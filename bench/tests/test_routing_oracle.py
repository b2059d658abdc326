"""bench/routing_oracle: the static partitions it searches, and its table is deterministic."""

from __future__ import annotations

import pytest

from bench.routing_landscape import NODES
from bench.routing_oracle import (
    Partition,
    Reacting,
    Static,
    known_rates,
    main,
    partition,
    reaction_nodes,
    search_space,
)
from bench.routing_workload import WorkloadSpec, ranked_names


def _rates() -> dict[str, float]:
    return {f"/r/bench/f{k:02d}": 10.0 / (k + 1) for k in range(20)}


def test_the_protected_set_keeps_off_the_tails_node_and_is_balanced_by_rate() -> None:
    rates = _rates()
    homes, tail = partition(Partition(1, 8, "rate"), rates, NODES)
    assert len(tail) == 1
    hottest = sorted(rates, key=lambda k: -rates[k])[:8]
    assert set(homes) == set(hottest)
    assert all(len(h) == 1 and h[0] not in tail for h in homes.values())
    load = dict.fromkeys(NODES, 0.0)
    for key, h in homes.items():
        load[h[0]] += rates[key]
    hosts = [load[n] for n in NODES if n not in tail]
    assert max(hosts) <= rates[hottest[0]]  # greedy by rate: no node over the hottest alone


def test_with_rate_and_tail_the_tails_node_starts_with_the_tails_rate() -> None:
    rates = _rates()
    homes, tail = partition(Partition(1, 8, "rate+tail"), rates, NODES)
    on_tail = [k for k, h in homes.items() if h[0] in tail]
    tail_rate = sum(v for k, v in rates.items() if k not in homes)
    assert sum(rates[k] for k in on_tail) + tail_rate <= rates[max(rates, key=rates.__getitem__)]
    assert on_tail != list(homes)


def test_a_spread_function_takes_its_homes_in_turn_and_the_tail_goes_to_its_node() -> None:
    rates = {"/r/bench/hot": 100.0, **{f"/r/bench/c{k}": 1.0 for k in range(20)}}
    homes, tail = partition(Partition(1, 1, "rate", spread=True), rates, NODES)
    assert len(homes["/r/bench/hot"]) >= 2
    router = Static(NODES, homes, tail)
    firsts = {router.choose(0, "/r/bench/hot", 0.0)[0] for _ in range(len(homes["/r/bench/hot"]))}
    assert firsts == set(homes["/r/bench/hot"])
    assert router.choose(0, "/r/bench/c3", 0.0)[0] == tail[0]
    assert sorted(router.choose(0, "/r/bench/c3", 0.0)) == sorted(NODES)


def test_the_search_covers_no_tail_and_tails_of_one_and_two_nodes() -> None:
    space = search_space(200, 5)
    assert {p.tail for p in space} == {0, 1, 2}
    assert any(p.protected == 0 for p in space)
    assert any(p.protected == 200 and p.tail == 0 for p in space)  # every function placed
    assert all(p.protected < 200 for p in space if p.tail)  # a tail has functions


def test_the_table_is_deterministic(capsys: pytest.CaptureFixture[str]) -> None:
    args = ["--functions", "12", "--rate", "6", "--duration-s", "60", "--top", "3"]
    assert main(args) == 0
    first = capsys.readouterr().out
    assert "best of all:" in first
    assert "online admission (fnlb):" in first
    assert main(args) == 0
    assert capsys.readouterr().out == first


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(SystemExit):
        main(["--exec-ms", "20"])
    with pytest.raises(SystemExit):
        main(["--warm-s", "200"])


def _spec() -> WorkloadSpec:
    return WorkloadSpec(
        functions=20,
        total_rate=20.0,
        duration_s=120.0,
        burst_rank=0,
        burst_at_s=60.0,
        burst_s=20.0,
    )


def test_steady_rates_leave_the_burst_out_and_warmup_rates_count_the_first_seconds() -> None:
    spec = _spec()
    hot = "/r/bench/" + ranked_names(spec)[0]
    trace, steady = known_rates(spec, "trace", 30.0), known_rates(spec, "steady", 30.0)
    warmup = known_rates(spec, "warmup", 30.0)
    # the burst (10x for 20 s of 120) raises the whole-trace rate by about 2.5x
    assert trace[hot] > 2.0 * steady[hot]
    assert 0.5 * warmup[hot] < steady[hot] < 2.0 * warmup[hot]
    others = [k for k in trace if k != hot]
    assert all(abs(trace[k] - steady[k]) <= trace[k] for k in others)
    with pytest.raises(ValueError, match="knowing must be one of"):
        known_rates(spec, "hindsight", 30.0)


def test_the_burst_goes_to_its_home_then_the_least_loaded_nodes_and_the_tail_last() -> None:
    rates = {"/r/bench/hot": 20.0, **{f"/r/bench/c{k}": 1.0 for k in range(20)}}
    homes, tail = partition(Partition(1, 4, "rate"), rates, NODES)
    spread = reaction_nodes(homes, tail, rates, "/r/bench/hot", 3, NODES)
    assert spread[0] == homes["/r/bench/hot"][0]
    assert len(spread) == 3
    assert not set(spread) & set(tail)
    every = reaction_nodes(homes, tail, rates, "/r/bench/hot", len(NODES), NODES)
    assert every[-1] == tail[0]


def test_the_burst_takes_its_nodes_in_turn_only_while_it_lasts() -> None:
    rates = {"/r/bench/hot": 20.0, **{f"/r/bench/c{k}": 1.0 for k in range(20)}}
    homes, tail = partition(Partition(1, 4, "rate"), rates, NODES)
    spread = reaction_nodes(homes, tail, rates, "/r/bench/hot", 3, NODES)
    router = Reacting(NODES, homes, tail, "/r/bench/hot", spread, 10.0, 20.0)
    assert {router.choose(0, "/r/bench/hot", 15.0)[0] for _ in range(3)} == set(spread)
    assert {router.choose(0, "/r/bench/hot", 25.0)[0] for _ in range(3)} == {spread[0]}
    assert router.choose(0, "/r/bench/c1", 15.0) == Static(NODES, homes, tail).choose(
        0, "/r/bench/c1", 15.0
    )


def test_a_reacting_search_counts_the_partitions_under_the_target(
    capsys: pytest.CaptureFixture[str],
) -> None:
    args = ["--functions", "12", "--rate", "6", "--duration-s", "60", "--top", "3"]
    assert main([*args, "--knowing", "warmup", "--react-s", "2"]) == 0
    out = capsys.readouterr().out
    assert "knowing the rates of the first 30 s, the burst spread from 2 s" in out
    assert "burst over 2 nodes" in out
    assert "at or under 0.85x pooled memory among those:" in out


@pytest.mark.parametrize(
    "bad", [["--react-s", "-1"], ["--knowing", "warmup", "--warm-s", "0"], ["--knowing", "all"]]
)
def test_what_the_partitions_know_is_checked(bad: list[str]) -> None:
    with pytest.raises(SystemExit):
        main(bad)
