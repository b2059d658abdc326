"""The node-set CRDT: conflict rule, merge laws, convergence, drift, tombstone collection."""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import reduce

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fnlb.cluster.hlc import HybridClock, Timestamp
from fnlb.cluster.nodeset import Entry, NodeSet, merge_states, state_digest
from fnlb.errors import RemoteProtocolError

T0 = 1_700_000_000_000
HOUR = 3_600_000
DAY = 24 * HOUR
ADDRS = ("10.0.0.1:8080", "10.0.0.2:8080", "10.0.0.3:8080", "fn-a:8080")


def replica(node: str, **kwargs: int) -> NodeSet:
    return NodeSet(HybridClock(node), **kwargs)


# -- local operations and the conflict rule ---------------------------------------------


def test_add_remove_readd() -> None:
    s = replica("p1")
    s.add("b:1", T0)
    s.add("a:1", T0)
    assert s.members() == ("a:1", "b:1")
    s.remove("a:1", T0 + 1)
    assert s.members() == ("b:1",)
    assert "a:1" not in s
    tomb = s.get("a:1")
    assert tomb is not None
    assert not tomb.present
    s.add("a:1", T0 + 2)
    assert "a:1" in s


def test_operations_return_the_delta_to_broadcast() -> None:
    s = replica("p1")
    (delta,) = s.add("a:1", T0)
    assert delta == Entry("a:1", Timestamp(T0, 0, "p1"), True)
    other = replica("p2")
    assert other.merge([delta.to_wire()], T0).changed == [delta]
    assert other.members() == ("a:1",)


def test_a_delete_after_the_add_was_seen_wins_everywhere() -> None:
    a, b, c = replica("a"), replica("b"), replica("c")
    added = a.add("x:1", T0 + 5_000)  # a's clock runs 5 s ahead of b's
    b.merge(added, T0)
    removed = b.remove("x:1", T0)  # b's wall says earlier, its HLC says later
    for order in ([added, removed], [removed, added]):
        fresh = replica("d")
        for delta in order:
            fresh.merge(delta, T0)
        assert "x:1" not in fresh
    c.merge(removed, T0)
    c.merge(added, T0)
    a.merge(removed, T0)
    assert a.digest() == b.digest() == c.digest()
    assert "x:1" not in a


def test_re_adding_after_a_delete_brings_the_node_back() -> None:
    a, b = replica("a"), replica("b")
    b.merge(a.add("x:1", T0), T0)
    a.merge(b.remove("x:1", T0 + 1), T0 + 1)
    b.merge(a.add("x:1", T0 + 2), T0 + 2)
    assert "x:1" in a
    assert "x:1" in b


def test_concurrent_add_and_delete_resolve_alike_whatever_the_order() -> None:
    a, b = replica("a"), replica("b")
    added = a.add("x:1", T0)  # neither has seen the other's operation
    removed = b.remove("x:1", T0)
    winner = max(added + removed, key=Entry.rank)
    assert winner.stamp.node == "b"  # same wall and counter: the peer id decides
    results = set()
    for order in ([added, removed], [removed, added]):
        fresh = replica("c")
        for delta in order:
            fresh.merge(delta, T0)
        results.add((fresh.members(), fresh.digest()))
    a.merge(removed, T0)
    b.merge(added, T0)
    results.add((a.members(), a.digest()))
    results.add((b.members(), b.digest()))
    assert results == {((), a.digest())}


def test_a_removal_wins_an_exact_tie() -> None:
    stamp = Timestamp(T0, 0, "a")
    added, removed = Entry("x:1", stamp, True), Entry("x:1", stamp, False)
    assert merge_states({"x:1": added}, {"x:1": removed})["x:1"] == removed
    assert merge_states({"x:1": removed}, {"x:1": added})["x:1"] == removed


def test_addresses_are_checked() -> None:
    with pytest.raises(ValueError, match="address"):
        replica("a").add("", T0)
    with pytest.raises(ValueError, match="address"):
        replica("a").remove("x" * 256, T0)


# -- merge laws (hypothesis) -------------------------------------------------------------

stamps = st.builds(
    Timestamp, st.integers(T0, T0 + 50), st.integers(0, 3), st.sampled_from(["a", "b", "c"])
)
entries = st.builds(Entry, st.sampled_from(ADDRS), stamps, st.booleans())


def join_all(es: Iterable[Entry]) -> dict[str, Entry]:
    empty: dict[str, Entry] = {}
    return reduce(merge_states, ({e.addr: e} for e in es), empty)


states = st.lists(entries, max_size=12).map(join_all)


@given(states, states)
def test_merge_is_commutative(a: dict[str, Entry], b: dict[str, Entry]) -> None:
    assert merge_states(a, b) == merge_states(b, a)


@given(states, states, states)
def test_merge_is_associative(
    a: dict[str, Entry], b: dict[str, Entry], c: dict[str, Entry]
) -> None:
    assert merge_states(merge_states(a, b), c) == merge_states(a, merge_states(b, c))


@given(states, states)
def test_merge_is_idempotent(a: dict[str, Entry], b: dict[str, Entry]) -> None:
    ab = merge_states(a, b)
    assert merge_states(a, a) == a
    assert merge_states(ab, b) == ab


@given(states, states)
def test_replica_merge_is_the_join(a: dict[str, Entry], b: dict[str, Entry]) -> None:
    r = replica("z")
    r.merge(a.values(), T0)
    r.merge(b.values(), T0)
    assert r.state() == merge_states(a, b)
    assert r.digest() == state_digest(merge_states(b, a))


# An operation: (peer index, add?, address index, ms since the previous operation).
operations = st.lists(
    st.tuples(st.integers(0, 2), st.booleans(), st.integers(0, 3), st.integers(0, 3)),
    min_size=1,
    max_size=30,
)


def _run(ops: Sequence[tuple[int, bool, int, int]], seed: int) -> tuple[list[NodeSet], list[Entry]]:
    """Peers issue the operations, each seeing a random subset of the earlier deltas."""
    rng = random.Random(seed)
    peers = [replica(f"p{i}") for i in range(3)]
    deltas: list[Entry] = []
    now = T0
    for peer, add, addr, step in ops:
        now += step
        seen = [d for d in deltas if rng.random() < 0.5]
        peers[peer].merge(seen, now)
        op = peers[peer].add if add else peers[peer].remove
        deltas.extend(op(ADDRS[addr], now))
    return peers, deltas


@settings(max_examples=60)
@given(operations, st.integers(0, 2**32), st.integers(0, 2**32))
def test_any_delivery_order_converges(
    ops: list[tuple[int, bool, int, int]], seed: int, order_seed: int
) -> None:
    peers, deltas = _run(ops, seed)
    now = T0 + 1000
    rng = random.Random(order_seed)
    views = []
    for _ in range(3):
        shuffled = deltas + rng.sample(deltas, len(deltas) // 2)  # with duplicates
        rng.shuffle(shuffled)
        fresh = replica("fresh")
        for delta in shuffled:
            fresh.merge([delta], now)
        views.append((fresh.members(), fresh.digest()))
    for peer in peers:  # the issuing peers too, once they have everything
        peer.merge(deltas, now)
        views.append((peer.members(), peer.digest()))
    assert len(set(views)) == 1
    expected = join_all(deltas)
    assert views[0][1] == state_digest(expected)


@settings(max_examples=60)
@given(operations, st.integers(0, 2**32))
def test_the_last_operation_a_peer_saw_before_its_own_is_overridden(
    ops: list[tuple[int, bool, int, int]], seed: int
) -> None:
    """Causality: an operation outranks every entry its peer had merged before issuing it."""
    rng = random.Random(seed)
    peers = [replica(f"p{i}") for i in range(3)]
    deltas: list[Entry] = []
    now = T0
    for peer, add, addr, step in ops:
        now += step
        peers[peer].merge([d for d in deltas if rng.random() < 0.5], now)
        seen = peers[peer].get(ADDRS[addr])
        (entry,) = (peers[peer].add if add else peers[peer].remove)(ADDRS[addr], now)
        assert seen is None or entry.rank() > seen.rank()
        deltas.append(entry)


# -- snapshots, digests, restarts --------------------------------------------------------


def test_snapshot_round_trips_through_msgpack() -> None:
    s = replica("a")
    s.add("a:1", T0)
    s.add("b:1", T0)
    s.remove("b:1", T0 + 1)
    data = msgpack.unpackb(msgpack.packb(s.snapshot()))
    restored = NodeSet.from_snapshot(data, HybridClock("a"))
    assert restored.state() == s.state()
    assert restored.digest() == s.digest()
    assert restored.members() == ("a:1",)


def test_digest_depends_on_tombstones_and_not_on_history() -> None:
    a, b = replica("a"), replica("b")
    a.merge(b.add("x:1", T0), T0)
    assert a.digest() == b.digest()
    a.merge(b.remove("y:1", T0 + 1), T0 + 1)
    assert a.members() == b.members()
    assert a.digest() == b.digest()
    c = replica("c")
    c.merge(b.entries(), T0 + 1)
    assert c.digest() == b.digest()
    c.merge(c.remove("z:1", T0 + 2), T0 + 2)
    assert c.members() == b.members()
    assert c.digest() != b.digest()


def test_a_restart_with_the_wall_clock_set_back_keeps_later_operations_winning() -> None:
    s = replica("a")
    s.add("x:1", T0 + HOUR)
    restored = NodeSet.from_snapshot(s.snapshot(), HybridClock("a"))
    (removal,) = restored.remove("x:1", T0)  # the machine's clock is an hour behind now
    assert removal.stamp > s.get("x:1").stamp  # type: ignore[union-attr]
    s.merge([removal], T0 + HOUR)
    assert "x:1" not in s


@pytest.mark.parametrize(
    "garbage",
    [
        None,
        {"v": 2, "entries": []},
        {"v": 1},
        {"v": 1, "entries": [], "last_contact_ms": "yesterday"},
        {"v": 1, "entries": [], "gc_floor_ms": None},
        {"v": 1, "entries": [["a:1", T0, 0, "a"]]},
    ],
)
def test_garbage_snapshots_are_remote_errors(garbage: object) -> None:
    with pytest.raises(RemoteProtocolError):
        NodeSet.from_snapshot(garbage, HybridClock("a"))
    with pytest.raises(RemoteProtocolError):
        replica("a").merge_full(garbage, T0)


@pytest.mark.parametrize(
    "garbage",
    [
        ["a:1", T0, 0, "a"],
        ["", T0, 0, "a", True],
        ["a:1", T0, 0, "a", 1],
        ["a:1", -1, 0, "a", True],
        ["a:1", T0, 0, "", True],
        [3, T0, 0, "a", True],
        "a:1",
    ],
)
def test_a_batch_with_garbage_is_refused_whole(garbage: object) -> None:
    s = replica("a")
    good = ["ok:1", T0, 0, "b", True]
    with pytest.raises(RemoteProtocolError) as err:
        s.merge([good, garbage], T0)
    assert err.value.reason in ("bad_nodeset_entry", "bad_hlc")
    assert s.entries() == []


# -- drift -------------------------------------------------------------------------------


def test_entries_from_too_far_in_the_future_wait_until_time_catches_up() -> None:
    s = NodeSet(HybridClock("b", max_drift_ms=60_000))
    future = Entry("x:1", Timestamp(T0 + 10 * 60_000, 0, "a"), True)
    result = s.merge([future], T0)
    assert result.refused_drift == [future]
    assert result.changed == []
    assert "x:1" not in s
    assert s.clock.last.wall_ms == 0  # the clock did not jump ahead
    later = s.merge([future], T0 + 9 * 60_000)
    assert later.changed == [future]
    assert "x:1" in s


# -- tombstone collection and the stale-peer rule ----------------------------------------


def test_tombstones_are_collected_after_the_horizon_only() -> None:
    s = replica("a")
    s.add("keep:1", T0)
    s.add("x:1", T0)
    s.remove("x:1", T0 + 1)
    assert s.collect_tombstones(T0 + 1 + DAY) == []
    assert s.collect_tombstones(T0 + 2 + DAY) == ["x:1"]
    assert s.get("x:1") is None
    assert s.gc_floor_ms == T0 + 2
    assert s.members() == ("keep:1",)  # live entries are never collected


def _deleted_and_collected(peer: NodeSet, when: int) -> tuple[NodeSet, list[Entry]]:
    """`peer` and a fellow that both saw x:1 added at T0; the fellow deletes and collects."""
    healthy = replica("h")
    added = healthy.add("x:1", T0)
    peer.merge(added, T0)
    healthy.remove("x:1", T0 + HOUR)
    assert healthy.collect_tombstones(when) == ["x:1"]
    return healthy, added


def test_the_ghost_of_a_collected_tombstone_is_refused() -> None:
    stale = replica("s")
    now = T0 + 2 * DAY
    healthy, added = _deleted_and_collected(stale, now)
    result = healthy.merge(added, now)  # the old add, replayed by a peer that missed the delete
    assert result.refused_ghosts == 1
    assert "x:1" not in healthy
    assert healthy.merge(healthy.add("x:1", now), now).changed == []  # a new add still works
    assert "x:1" in healthy


def test_a_stale_peer_drops_its_ghosts_at_the_full_sync() -> None:
    stale = replica("s")
    stale.merge_full({"v": 1, "entries": [], "gc_floor_ms": 0}, T0)  # was in the cluster
    now = T0 + 2 * DAY
    healthy, _ = _deleted_and_collected(stale, now)
    stale.add("new:1", now - HOUR)  # made while cut off, recent: must survive
    assert stale.is_stale(now)
    assert stale.merge([], now).needs_full_sync
    healthy.merge_full(stale.snapshot(), now)  # push/pull, both ways
    result = stale.merge_full(healthy.snapshot(), now)
    assert [e.addr for e in result.dropped] == ["x:1"]
    assert not stale.is_stale(now)
    assert stale.members() == healthy.members() == ("new:1",)
    assert stale.digest() == healthy.digest()


def test_a_new_peer_learns_old_entries_and_then_guards_against_ghosts() -> None:
    healthy = replica("h")
    healthy.add("old:1", T0)
    healthy.add("x:1", T0)
    healthy.remove("x:1", T0 + HOUR)
    now = T0 + 30 * DAY
    healthy.collect_tombstones(now)
    fresh = replica("f")
    fresh.merge_full(healthy.snapshot(), now)
    assert fresh.members() == ("old:1",)
    assert fresh.gc_floor_ms == healthy.gc_floor_ms
    ghost = Entry("x:1", Timestamp(T0, 0, "h"), True)
    assert fresh.merge([ghost], now).refused_ghosts == 1


def test_a_ghost_caught_by_a_new_peer_is_cleaned_at_its_next_full_sync() -> None:
    stale = replica("s")
    now = T0 + 2 * DAY
    healthy, _ = _deleted_and_collected(stale, now)
    fresh = replica("f")
    fresh.merge_full(stale.snapshot(), now)  # the new peer met the stale one first
    assert "x:1" in fresh
    result = fresh.merge_full(healthy.snapshot(), now)
    assert [e.addr for e in result.dropped] == ["x:1"]
    assert fresh.digest() == healthy.digest()


def test_a_replica_restored_from_an_old_snapshot_is_stale() -> None:
    s = replica("a")
    s.merge_full(replica("b").snapshot(), T0)
    restored = NodeSet.from_snapshot(s.snapshot(), HybridClock("a"))
    assert not restored.is_stale(T0 + HOUR)
    assert restored.is_stale(T0 + DAY)
    assert not replica("new").is_stale(T0 + 100 * DAY)


def test_the_stale_bound_must_leave_room_for_drift() -> None:
    with pytest.raises(ValueError, match="stale_after_ms"):
        NodeSet(HybridClock("a", max_drift_ms=HOUR), horizon_ms=DAY, stale_after_ms=DAY)
    NodeSet(HybridClock("a", max_drift_ms=HOUR), horizon_ms=DAY, stale_after_ms=DAY - HOUR)


# -- a seeded cluster simulation: loss, partitions, clock skew, collection ---------------


def _reachable(cut: dict[int, int], a: int, b: int) -> bool:
    return a == b or (a not in cut and b not in cut)


SIM_HORIZON = 6 * HOUR


@dataclass
class SimStats:
    """How often the simulation went through the tombstone-safety paths."""

    ghosts_refused: int = 0
    ghosts_dropped: int = 0
    collected: int = 0


def _simulate(seed: int, longest_cut_ms: int) -> tuple[list[NodeSet], dict[str, Entry], SimStats]:
    """Four peers for five virtual days, a 6 h horizon, lossy broadcasts and push/pull.

    Returns the peers after a healing round of push/pull, the join of all writes ever
    issued, and how often ghosts were met.
    """
    rng = random.Random(seed)
    step = 10 * 60_000
    skews = [rng.randint(-20_000, 20_000) for _ in range(4)]
    peers = [
        NodeSet(HybridClock(f"p{i}", max_drift_ms=60_000), horizon_ms=SIM_HORIZON) for i in range(4)
    ]
    stats = SimStats()
    cut: dict[int, int] = {}  # peer -> time its isolation ends
    issued: dict[str, Entry] = {}
    addrs = [f"10.0.0.{i}:8080" for i in range(10)]
    for t in range(T0, T0 + 5 * DAY, step):
        cut = {p: end for p, end in cut.items() if end > t}
        if not cut and rng.random() < 0.05:
            cut[rng.randrange(4)] = t + rng.randint(step, longest_cut_ms)
        if rng.random() < 0.1:
            p = rng.randrange(4)
            op = peers[p].add if rng.random() < 0.5 else peers[p].remove
            deltas = op(rng.choice(addrs), t + skews[p])
            issued = merge_states(issued, {d.addr: d for d in deltas})
            for q in range(4):
                if q != p and _reachable(cut, p, q) and rng.random() < 0.8:
                    stats.ghosts_refused += peers[q].merge(deltas, t + skews[q]).refused_ghosts
        for a in range(4):  # each peer's push/pull with a random other, as memberlist does
            b = rng.choice([q for q in range(4) if q != a])
            if _reachable(cut, a, b):
                snap_a, snap_b = peers[a].snapshot(), peers[b].snapshot()
                for peer, snap, now in ((a, snap_b, t + skews[a]), (b, snap_a, t + skews[b])):
                    result = peers[peer].merge_full(snap, now)
                    stats.ghosts_refused += result.refused_ghosts
                    stats.ghosts_dropped += len(result.dropped)
        for p in range(4):
            stats.collected += len(peers[p].collect_tombstones(t + skews[p]))
    end = T0 + 5 * DAY
    for _ in range(2):  # healed: a full round of push/pull
        for a in range(4):
            for b in range(4):
                if a != b:
                    result = peers[b].merge_full(peers[a].snapshot(), end + skews[b])
                    stats.ghosts_refused += result.refused_ghosts
                    stats.ghosts_dropped += len(result.dropped)
    return peers, issued, stats


@pytest.mark.parametrize("seed", range(10))
def test_cut_offs_within_the_bound_converge_without_resurrection_or_loss(seed: int) -> None:
    peers, issued, stats = _simulate(seed, longest_cut_ms=SIM_HORIZON // 2 - HOUR)
    assert stats.collected > 0
    assert len({p.digest() for p in peers}) == 1
    truth = tuple(sorted(a for a, e in issued.items() if e.present))
    assert all(p.members() == truth for p in peers)


@pytest.mark.parametrize("seed", range(10))
def test_cut_offs_beyond_the_horizon_still_converge(seed: int) -> None:
    """Past the bound, adds made while cut off may be lost, but peers still agree."""
    peers, issued, stats = _simulate(seed, longest_cut_ms=2 * DAY)
    assert stats.ghosts_refused + stats.ghosts_dropped > 0
    assert len({p.digest() for p in peers}) == 1
    deleted = {a for a, e in issued.items() if not e.present}
    assert not deleted & set(peers[0].members())  # a delete, once collected, stays a delete
