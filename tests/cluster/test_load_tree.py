"""The load tree (fnlb.cluster.load_tree): links, exact sums, one source, older peers."""

from __future__ import annotations

import random

import msgpack
import pytest

from fnlb.cluster.load import ClusterLoad, LocalLoad
from fnlb.cluster.load_tree import FANOUT, LoadTree, is_idle, sum_digests, tree_links
from fnlb.cluster.state import ClusterState
from fnlb.errors import RemoteProtocolError
from fnlb.payloads.envelope import load_message, open_message
from fnlb.payloads.load_digest import decode_digest


def test_every_peer_but_the_root_has_one_parent_sorted_before_it() -> None:
    members = tuple(sorted(f"p{i:04d}" for i in range(1000)))
    children_of: dict[str, tuple[str, ...]] = {}
    depth = {members[0]: 0}
    for name in members:
        parent, children = tree_links(members, name)
        children_of[name] = children
        assert len(children) <= FANOUT
        if parent is None:
            assert name == members[0]
            continue
        assert parent < name  # no cycle, whatever two peers' views hold
        depth[name] = depth[parent] + 1
    counted = [c for cs in children_of.values() for c in cs]
    assert sorted(counted) == list(members[1:])  # every peer is someone's child, once
    assert max(depth.values()) == 4  # about log8 1000
    assert tree_links(members, "stranger") == (None, ())


def loads(seed: int, peers: int) -> list[LocalLoad]:
    rng = random.Random(seed)
    out = []
    for _ in range(peers):
        local = LocalLoad()
        for _ in range(rng.randrange(0, 300)):
            fn = f"/r/app/f{int(rng.paretovariate(1.2)) % 80}"
            node = f"10.0.0.{rng.randrange(30)}:8080"
            local.call_started(fn, node, rng.uniform(0, 1))
        out.append(local)
    return out


@pytest.mark.parametrize("seed", range(8))
def test_a_sum_keeps_the_totals_whole_and_each_listed_figure_exact(seed: int) -> None:
    digests = [decode_digest(x.digest(1.0, stamp_ms=1000)) for x in loads(seed, 12)]
    summed = decode_digest(sum_digests(digests, epoch=1, seq=1, stamp_ms=1000))
    each, whole = ClusterLoad(), ClusterLoad(single_source=True)
    for i, d in enumerate(digests):  # the inputs, summed by reads the old way
        each.merge(f"p{i}", sum_digests([d], epoch=1, seq=1, stamp_ms=1000), 1.0)
    whole.merge("root", sum_digests(digests, epoch=1, seq=1, stamp_ms=1000), 1.0)
    a, b = each.summary(1.0, hot=0), whole.summary(1.0, hot=0)
    assert (a.rate_c, a.in_flight, a.busy_c) == (b.rate_c, b.in_flight, b.busy_c)
    for fn, cells in summed.functions.items():  # listed per node: the exact sum per node
        for node, row in cells.items():
            expect = sum(d.functions.get(fn, {}).get(node, (0, 0, 0, 0))[0] for d in digests)
            assert row[0] == expect
            assert all(fn not in d.totals for d in digests)
    assert len(sum_digests(digests, epoch=1, seq=1, stamp_ms=1000)) <= 1000


def test_an_idle_digest_is_idle_and_a_busy_one_is_not() -> None:
    local = LocalLoad()
    assert is_idle(decode_digest(local.digest(1.0)))
    local.call_started("f", "n:1", 1.0)
    assert not is_idle(decode_digest(local.digest(1.0)))


def test_reads_take_the_newest_root_sum_never_two_roots_added() -> None:
    """After a heal (or a new root), the former root's last sums linger a few seconds."""
    local = LocalLoad()
    local.call_started("f", "n:1", 1.0)
    d = local.digest(1.0, stamp_ms=1000)
    view = ClusterLoad(single_source=True)
    view.merge("old-root", d, 1.0)
    view.merge("new-root", local.digest(1.1, stamp_ms=1100), 1.1)
    assert view.function_load("f", 1.2).in_flight == 1  # not 2
    assert view.peers(1.2) == ["new-root"]
    assert ClusterLoad().function_load("f", 1.2).in_flight == 0


def test_an_older_peers_digest_is_counted_once_by_the_root_only() -> None:
    """A peer built before the tree sends its own digest ("l") to every peer."""
    local = LocalLoad()
    local.call_started("f", "n:1", 1.0)
    legacy = load_message("old", local.digest(1.0, stamp_ms=1000))
    root, child = (
        ClusterState("a", healthy=1, unhealthy=1),
        ClusterState("b", healthy=1, unhealthy=1),
    )
    for p in (root, child):
        p.set_alive(["a", "b", "old"])
        p.merge_broadcast(legacy, 1000)
    child.queue_load(LocalLoad().digest(1.0, stamp_ms=1000), 1.0)
    ((_to, _key, up),) = child.take_sends()
    assert msgpack.unpackb(up)[0] == "u"
    root.merge_broadcast(up, 1050)
    root.queue_load(LocalLoad().digest(1.1, stamp_ms=1100), 1.1)
    assert root.load.function_load("f", 1.1).in_flight == 1  # once, not once per peer


def test_a_tree_forgets_a_dead_childs_subtree() -> None:
    tree = LoadTree("a")
    tree.set_members(["a", "b"])
    local = LocalLoad(epoch=2)  # orders after the idle digest below
    local.call_started("f", "n:1", 1.0)
    tree.from_child("b", LocalLoad(epoch=1).digest(1.0, stamp_ms=1000), 1.0)
    assert not tree.has_children(1.0)  # an idle child does not keep its parent talking
    tree.from_child("b", local.digest(1.0, stamp_ms=1000), 1.0)
    assert tree.has_children(1.0)
    tree.forget("b", 1.1)
    assert not tree.has_children(1.1)
    tree.from_child("b", local.digest(1.5, stamp_ms=1500), 1.5)  # back, with a newer digest
    assert tree.has_children(1.5)
    assert not tree.has_children(1.5 + tree.child_ttl_s + 0.1)  # silent: no longer counted


def test_tree_messages_are_checked_and_an_unknown_kind_is_refused() -> None:
    assert open_message(msgpack.packb(["u", "b", b"x"]))[0] == "u"
    assert open_message(msgpack.packb(["c", "a", b"x"]))[0] == "c"
    with pytest.raises(RemoteProtocolError):
        open_message(msgpack.packb(["c", 7, b"x"]))
    with pytest.raises(RemoteProtocolError):
        open_message(msgpack.packb(["z", "a", b"x"]))
    p = ClusterState("a", healthy=1, unhealthy=1)
    with pytest.raises(RemoteProtocolError):
        p.merge_broadcast(msgpack.packb(["u", "b", b"not a digest"]), 1000)


def test_a_cut_sum_is_sent_again_with_the_next_sums_and_no_other() -> None:
    """The sum before each cut on the grid (what settled reads select) comes back with the
    next CUT_COPIES sums; sums between cuts never do."""
    from fnlb.cluster.load_tree import CUT_COPIES, CUT_GRID_MS
    from fnlb.peer.control_loop import CUT_MS

    assert CUT_GRID_MS == CUT_MS  # the cuts the control loop reads are the ones copied
    tree = LoadTree("a")
    copies: list[tuple[int, bytes | None]] = []
    for stamp in range(100, 2100, 300):  # 100, 400, 700, 1000, 1300, 1600, 1900
        copies.append((stamp, tree.cut_copy(stamp, b"%d" % stamp)))
    # cut 1000: the sum stamped 1000 itself; cut 2000: 1900 (not yet followed by a later sum)
    assert copies == [
        (100, None),
        (400, None),
        (700, None),
        (1000, None),
        (1300, b"1000"),
        (1600, b"1000"),
        (1900, None),
    ]
    assert CUT_COPIES == 2
    assert tree.cut_copy(2200, b"2200") == b"1900"
    assert tree.cut_copy(2200, b"again") is None  # not newer: nothing copied, nothing moved
    assert tree.cut_copy(2500, b"2500") == b"1900"
    assert tree.cut_copy(2800, b"2800") is None


def test_a_child_that_lost_a_cut_sum_reads_the_cut_as_the_others_and_passes_it_on() -> None:
    """3 peers' settled reads must select the same root sum (the agreement of admission,
    tests/routing/test_admission.py): the cut sum lost on its way to "b" comes with the next
    sum, "b" keeps it and forwards it to its own child, and the settled read agrees."""
    names = [f"p{i:02d}" for i in range(10)]  # p00 root; p01's child is p09 (FANOUT 8)
    peers = {n: ClusterState(n, healthy=1, unhealthy=1) for n in names}
    for p in peers.values():
        p.set_alive(names)
    root, mid, leaf = peers["p00"], peers["p01"], peers["p09"]
    assert leaf.tree.parent == "p01"
    local = LocalLoad()
    for i, stamp in enumerate((700, 1000, 1300)):
        local.call_started(f"r/app/f{i}", "n:1", stamp / 1000)
        root.queue_load(local.digest(stamp / 1000, stamp_ms=stamp), stamp / 1000)
        for to, _key, payload in root.take_sends():
            if to == "p01" and stamp == 1000:
                continue  # the cut sum of cut 1000 is lost on its way to p01
            if to == "p01":
                peers[to].merge_broadcast(payload, stamp + 50)
        for to, _key, payload in mid.take_sends():
            peers[to].merge_broadcast(payload, stamp + 80)
    for p in (root, mid, leaf):
        assert [d.stamp_ms for d in p.load.digests(1.4)] == [1300]
        assert p.load.peers(2.0, settled_ms=1000) == ["p00"]
        assert (
            p.load.summary(2.0, settled_ms=1000).checksum()
            == root.load.summary(2.0, settled_ms=1000).checksum()
        )
        assert p.load.function_load("r/app/f1", 2.0, settled_ms=1000).in_flight == 1
        assert p.load.function_load("r/app/f2", 2.0, settled_ms=1000).in_flight == 0


def test_the_root_keeps_its_sums_as_far_back_as_skipped_cuts_are_read() -> None:
    """A peer that skipped cuts reads back up to CATCH_UP_CUTS of them, as late as just
    before the next cut; the root holds its own sums as they are made, so it must keep them
    that far back or it alone reads no sum there (a child's history lags by the way down)."""
    from fnlb.peer.control_loop import CATCH_UP_CUTS, CUT_MS
    from fnlb.peer.core import DIGEST_S

    load = ClusterLoad(single_source=True)
    local = LocalLoad()
    step = round(DIGEST_S * 1000)
    now_ms = 1_000_000
    for stamp in range(now_ms - 20_000, now_ms + 1, step):
        local.call_started(f"r/app/f{stamp}", "n:1", stamp / 1000)
        load.merge("root", local.digest(stamp / 1000, stamp_ms=stamp), stamp / 1000)
    cut = now_ms - 1000 - (CUT_MS - 1)  # the current cut, read as late as it can be
    oldest = cut - CATCH_UP_CUTS * CUT_MS
    now = now_ms / 1000
    expected = oldest - (oldest - (now_ms - 20_000)) % step
    got = load.summary(now, settled_ms=oldest)
    assert load.peers(now, settled_ms=oldest) == ["root"]
    assert got.checksum() != 0
    assert load.function_load(f"r/app/f{expected}", now, settled_ms=oldest).rate > 0
    assert load.function_load(f"r/app/f{expected + step}", now, settled_ms=oldest).rate == 0
