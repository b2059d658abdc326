"""The shared health rule: a majority of live peers takes a node out; one peer's trouble doesn't."""

from __future__ import annotations

import itertools

from hypothesis import given
from hypothesis import strategies as st

from fnlb.cluster.health_merge import Verdict, VerdictTable

PEERS = ["a", "b", "c"]


def table(*entries: tuple[str, str, bool, int]) -> VerdictTable:
    t = VerdictTable()
    for peer, node, online, stamp in entries:
        t.merge(peer, node, Verdict(online, stamp))
    return t


def test_majority_of_live_peers_decides() -> None:
    t = table(("a", "n", False, 1), ("b", "n", True, 1), ("c", "n", True, 1))
    assert t.cluster_state("n", PEERS) == "online"
    t.merge("b", "n", Verdict(False, 2))
    assert t.cluster_state("n", PEERS) == "offline"


def test_one_peer_that_cannot_reach_a_node_avoids_it_alone() -> None:
    t = table(("a", "n", False, 1), ("b", "n", True, 1), ("c", "n", True, 1))
    assert t.cluster_state("n", PEERS) == "online"
    assert t.locally_excluded("a", ["n"]) == {"n"}
    assert t.locally_excluded("b", ["n"]) == frozenset()


def test_a_tie_keeps_the_node_and_dead_peers_do_not_vote() -> None:
    t = table(("a", "n", False, 1), ("b", "n", True, 1))
    assert t.cluster_state("n", ["a", "b"]) == "online"
    assert t.cluster_state("n", ["a"]) == "offline"  # b is dead: its word no longer counts
    assert t.cluster_state("n", ["z"]) == "unknown"


def test_newest_verdict_of_a_peer_wins_whatever_the_order() -> None:
    t = VerdictTable()
    assert t.merge("a", "n", Verdict(False, 5))
    assert not t.merge("a", "n", Verdict(True, 3))  # older: ignored
    assert t.verdict("a", "n") == Verdict(False, 5)
    assert t.merge("a", "n", Verdict(True, 6))


def test_forgetting_nodes_and_peers() -> None:
    t = table(("a", "n", False, 1), ("a", "m", True, 1), ("b", "n", False, 1))
    assert t.of_peer("a") == {"n": Verdict(False, 1), "m": Verdict(True, 1)}
    t.forget_peer("a")
    assert t.of_peer("a") == {}
    t.forget_node("n")
    assert t.verdicts("n") == {}
    assert t.states(["n", "m"], PEERS) == {"n": "unknown", "m": "unknown"}


verdicts = st.lists(
    st.tuples(st.sampled_from(PEERS), st.sampled_from(["n1", "n2"]), st.booleans(),
              st.integers(0, 20)),
    max_size=30,
)  # fmt: skip


@given(verdicts)
def test_every_delivery_order_gives_the_same_cluster_verdicts(
    entries: list[tuple[str, str, bool, int]],
) -> None:
    # Stamps are unique per peer in practice (an HLC); make them so here.
    seen: dict[tuple[str, str, int], bool] = {}
    for peer, node, online, stamp in entries:
        seen.setdefault((peer, node, stamp), online)
    unique = [(p, n, o, s) for (p, n, s), o in seen.items()]
    results = set()
    for order in itertools.islice(itertools.permutations(unique), 24):
        t = table(*order)
        results.add(tuple(sorted(t.states(["n1", "n2"], PEERS).items())))
        t2 = table(*order, *order)  # duplicates change nothing
        assert tuple(sorted(t2.states(["n1", "n2"], PEERS).items())) in results
    assert len(results) == 1
