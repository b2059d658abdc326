"""Several ClusterStates exchanging broadcasts and full states converge and route alike."""

from __future__ import annotations

import random

import pytest

from fnlb.cluster.state import ClusterState
from fnlb.errors import RemoteProtocolError

NAMES = ["a", "b", "c"]


def cluster() -> dict[str, ClusterState]:
    peers = {n: ClusterState(n, healthy=1, unhealthy=2) for n in NAMES}
    for p in peers.values():
        p.set_alive(NAMES)
    return peers


def deliver(peers: dict[str, ClusterState], now_ms: int, rng: random.Random | None = None) -> None:
    """Flush every outbox to every other peer (shuffled when `rng` is given)."""
    while True:
        msgs = [(name, b) for name, p in peers.items() for b in p.take_broadcasts()]
        if not msgs:
            return
        if rng is not None:
            rng.shuffle(msgs)
        for origin, (_key, payload) in msgs:
            for name, p in peers.items():
                if name != origin:
                    p.merge_broadcast(payload, now_ms)


def test_a_node_added_anywhere_is_routable_everywhere_after_checks() -> None:
    peers = cluster()
    peers["a"].add_node("n1:8080", 1000)
    deliver(peers, 1001)
    for p in peers.values():
        assert p.nodes.members() == ("n1:8080",)
        assert p.view.states == {"n1:8080": "unknown"}
        p.record_check("n1:8080", True, 1002)
    deliver(peers, 1003)
    assert {p.checksum() for p in peers.values()} == {peers["a"].checksum()}
    assert all(p.view.routable == ("n1:8080",) for p in peers.values())
    peers["b"].remove_node("n1:8080", 2000)
    deliver(peers, 2001)
    assert all(p.nodes.members() == () for p in peers.values())


def test_concurrent_add_and_delete_resolve_alike_in_any_order() -> None:
    for seed in range(20):
        rng = random.Random(seed)
        peers = cluster()
        peers["a"].add_node("n:1", 1000)
        deliver(peers, 1000)
        # a partition: each side changes the same node without hearing the other
        peers["a"].remove_node("n:1", 5000 + rng.randrange(10))
        peers["c"].add_node("n:1", 5000 + rng.randrange(10))
        peers["b"].add_node("m:1", 5000)
        deliver(peers, 6000, rng)
        assert len({p.nodes.digest() for p in peers.values()}) == 1
        assert len({p.checksum() for p in peers.values()}) == 1


def test_full_state_exchange_heals_what_broadcasts_missed() -> None:
    peers = cluster()
    peers["a"].add_node("n:1", 1000)
    peers["a"].record_check("n:1", False, 1001)
    peers["a"].take_broadcasts()  # lost
    assert peers["b"].nodes.members() == ()
    assert peers["b"].merge_full(peers["a"].local_state(False), 2000)
    assert peers["b"].nodes.members() == ("n:1",)
    assert peers["b"].verdicts.verdict("a", "n:1") is not None
    assert not peers["b"].merge_full(peers["a"].local_state(False), 2001)  # idempotent


def test_majority_takes_a_node_out_and_a_lone_failure_only_locally() -> None:
    peers = cluster()
    peers["a"].add_node("n:1", 1000)
    deliver(peers, 1000)
    for p in peers.values():
        p.record_check("n:1", True, 1001)
    deliver(peers, 1002)
    # only a cannot reach it
    peers["a"].record_check("n:1", False, 2000)
    peers["a"].record_check("n:1", False, 2001)
    deliver(peers, 2002)
    assert peers["a"].view.states["n:1"] == "offline"
    assert peers["b"].view.states["n:1"] == "online"
    assert peers["c"].view.states["n:1"] == "online"
    # the others are asked to re-check at once; when b confirms, it is out everywhere
    assert peers["b"].take_rechecks() == ["n:1"]
    assert peers["c"].take_rechecks() == ["n:1"]
    peers["b"].record_check("n:1", False, 2003)
    peers["b"].record_check("n:1", False, 2004)
    deliver(peers, 2005)
    assert all(p.view.states["n:1"] == "offline" for p in peers.values())
    assert len({p.checksum() for p in peers.values()}) == 1


def test_dead_peers_stop_voting() -> None:
    peers = cluster()
    peers["a"].add_node("n:1", 1000)
    deliver(peers, 1000)
    peers["a"].record_check("n:1", False, 1001)
    peers["b"].record_check("n:1", True, 1001)
    deliver(peers, 1002)
    assert peers["b"].view.states["n:1"] == "online"  # 1 of 2 voters: a tie keeps it
    peers["b"].set_alive(["b", "c"])  # a died: its verdict no longer counts
    assert peers["b"].view.states["n:1"] == "online"
    peers["c"].set_alive(["a", "c"])
    # c has no verdict of its own yet: a live peer not heard from counts as online (a's
    # "offline" is 1 of 2), as b's first "online" was never broadcast (it is presumed)
    assert peers["c"].view.states["n:1"] == "online"
    peers["a"].set_alive(["a"])
    assert peers["a"].view.states["n:1"] == "offline"  # alone, a's own word decides


def test_a_first_online_verdict_is_not_broadcast_and_a_minority_cannot_take_a_node_out() -> None:
    peers = cluster()
    peers["a"].add_node("n:1", 1000)
    deliver(peers, 1000)
    for p in peers.values():
        p.record_check("n:1", True, 1001)
        assert p.take_broadcasts() == []  # news to nobody: every peer presumes it
    peers["a"].record_check("n:1", False, 2000)
    peers["a"].record_check("n:1", False, 2001)
    sent = peers["a"].take_broadcasts()
    assert [k for k, _ in sent] == [b"v/n:1"]  # "offline" travels at once
    for name in ("b", "c"):
        peers[name].merge_broadcast(sent[0][1], 2002)
        # b and c never heard each other's "online", yet a's "offline" is 1 of 3 voters
        assert peers[name].view.states["n:1"] == "online"
    assert len({p.checksum() for p in peers.values()}) == 1
    # /1/lb/cluster shows the votes counted: the verdicts held, the others presumed online
    assert peers["b"].report()[0].verdicts == {"a": False, "b": True, "c": True}
    peers["a"].record_check("n:1", True, 3000)
    assert [k for k, _ in peers["a"].take_broadcasts()] == [b"v/n:1"]  # back online: news


@pytest.mark.parametrize(
    "payload",
    [b"", b"\xc1", b"\x90", b"\x92\xa1n\x01", b"\x95\xa1v\x01\x02\x03\x04", b"\x81\x01\x02"],
)
def test_garbage_is_a_remote_protocol_error(payload: bytes) -> None:
    p = ClusterState("a", healthy=1, unhealthy=1)
    with pytest.raises(RemoteProtocolError):
        p.merge_broadcast(payload, 0)
    with pytest.raises(RemoteProtocolError):
        p.merge_full(payload, 0)


def test_an_unchanged_node_reading_is_not_gossiped_again() -> None:
    from fnlb.payloads.node_metrics import NodeMetrics

    p = ClusterState("a", healthy=1, unhealthy=1)
    p.add_node("n:1", 1000)
    p.take_broadcasts()
    p.record_metrics("n:1", NodeMetrics(0, 0, 0, 1024, 0, 2000))
    assert len(p.take_broadcasts()) == 1
    p.record_metrics("n:1", NodeMetrics(0, 0, 0, 1024, 0, 5000))  # same figures, later
    assert p.take_broadcasts() == []
    assert p.node_metrics["n:1"].at_ms == 5000
    p.record_metrics("n:1", NodeMetrics(1, 1, 128, 896, 0, 8000))  # it moved: share it
    assert len(p.take_broadcasts()) == 1


def test_one_reporter_per_node_and_push_pull_carries_no_uncontested_verdict() -> None:
    from fnlb.payloads.node_metrics import NodeMetrics

    peers = cluster()
    peers["a"].add_node("n:1", 1000)
    deliver(peers, 1000)
    reporters = {p.reporter("n:1") for p in peers.values()}
    assert len(reporters) == 1  # every peer agrees who shares n:1's readings
    for i, p in enumerate(peers.values()):
        p.take_broadcasts()
        p.record_metrics("n:1", NodeMetrics(i, 0, 0, 1024, 0, 2000 + i))
    shared = {name for name, p in peers.items() if p.take_broadcasts()}
    assert shared == reporters
    for p in peers.values():
        p.record_check("n:1", True, 3000)
    deliver(peers, 3001)
    state = peers["b"].local_state(False)
    fresh = ClusterState("z", healthy=1, unhealthy=1)
    fresh.merge_full(state, 4000)
    assert set(fresh.verdicts.verdicts("n:1")) == set()  # all online: presumed anyway


def test_a_load_digest_goes_up_the_tree_and_only_the_newest_is_sent() -> None:
    import msgpack

    from fnlb.cluster.load import LocalLoad

    local = LocalLoad()
    p = ClusterState("b", healthy=1, unhealthy=1)
    p.set_alive(["a", "b"])  # "a" is the root, "b" its child
    p.take_broadcasts()
    older = local.digest(1.0, stamp_ms=1000)
    local.call_started("r/app/f", "n:1", 1.1)
    newer = local.digest(1.2, stamp_ms=1200)
    p.queue_load(older, 1.0)
    p.queue_load(newer, 1.2)
    assert p.take_broadcasts() == []  # not a broadcast: the other peers never relay it
    assert p.take_direct() == []  # nor sent to every peer
    ((to, key, payload),) = p.take_sends()
    assert (to, key) == ("a", b"u/b")
    assert msgpack.unpackb(payload) == ["u", "b", newer]
    assert p.take_sends() == []
    root = ClusterState("a", healthy=1, unhealthy=1)
    root.set_alive(["a", "b", "c"])
    root.merge_broadcast(payload, 1300)
    root.queue_load(LocalLoad().digest(1.3, stamp_ms=1300), 1.3)
    assert root.load.function_load("r/app/f", 1.3).in_flight == 1
    down = root.take_sends()
    assert sorted((to, key) for to, key, _p in down) == [("b", b"c/"), ("c", b"c/")]
    q = ClusterState("c", healthy=1, unhealthy=1)
    q.set_alive(["a", "b", "c"])
    q.merge_broadcast(down[0][2], 1400)
    assert q.load.function_load("r/app/f", 1.4).in_flight == 1


def test_a_verdict_stamped_far_ahead_is_refused_and_counted() -> None:
    import msgpack

    p = ClusterState("a", healthy=1, unhealthy=1)
    p.set_alive(["a", "b", "c"])
    p.add_node("n:1", 1000)
    forged = msgpack.packb(["v", "b", "n:1", False, 1 << 62], use_bin_type=True)
    assert p.merge_broadcast(forged, 2000) == (False, False)
    assert p.verdicts.verdict("b", "n:1") is None
    assert p.refused == {"verdict_drift": 1}
    # b's real verdicts, stamped by its clock, still count.
    real = msgpack.packb(["v", "b", "n:1", True, 2000 << 20], use_bin_type=True)
    assert p.merge_broadcast(real, 2000) == (True, True)
    verdict = p.verdicts.verdict("b", "n:1")
    assert verdict is not None
    assert verdict.online


def test_only_node_changes_are_held_and_refused_entries_are_reported() -> None:
    import msgpack

    p = ClusterState("a", healthy=1, unhealthy=1)
    p.add_node("n:1", 1000)
    verdict = msgpack.packb(["v", "b", "n:1", False, 1000 << 20], use_bin_type=True)
    with pytest.raises(RemoteProtocolError, match="not_a_node_change"):
        p.merge_node_change(verdict, 1000)
    far = msgpack.packb(["n", [["n:2", 1 << 50, 0, "b", True]]], use_bin_type=True)
    result = p.merge_node_change(far, 1000)
    assert len(result.refused_drift) == 1
    assert "n:2" not in p.nodes
    assert p.refused == {"hlc_drift": 1}
    near = msgpack.packb(["n", [["n:2", 1001, 0, "b", True]]], use_bin_type=True)
    result = p.merge_node_change(near, 1000)
    assert not result.refused_drift
    assert "n:2" in p.nodes


def test_entries_the_node_set_refused_or_dropped_are_counted() -> None:
    import msgpack

    from fnlb.cluster.hlc import HybridClock
    from fnlb.cluster.nodeset import NodeSet

    nodes = NodeSet(
        HybridClock("a"),
        horizon_ms=100_000,
        stale_after_ms=10_000,
        last_contact_ms=0,
        gc_floor_ms=5_000,
    )
    p = ClusterState("a", healthy=1, unhealthy=1, nodeset=nodes)
    ghost = msgpack.packb(["n", [["old:1", 1_000, 0, "b", True]]], use_bin_type=True)
    p.merge_broadcast(ghost, 20_000)  # below the floor, and we have not synced for 20 s
    assert p.refused == {"ghost_entries": 1, "needs_full_sync": 1}
    p.add_node("mine:1", 20_000)
    peer = NodeSet(HybridClock("b"), gc_floor_ms=30_000)  # it collected tombstones up there
    full = msgpack.packb({"nodes": peer.snapshot(), "verdicts": []}, use_bin_type=True)
    p.merge_full(full, 40_000)
    assert p.refused["ghosts_dropped"] == 1
    assert "mine:1" not in p.nodes


def test_a_full_state_carries_every_verdict_on_contested_nodes_and_none_elsewhere() -> None:
    """Before, it carried our own verdicts on every node and up to 512 recent ones of others:
    ~700 rows per exchange at a start with 200 nodes. Rows on nodes nobody calls offline
    decide nothing (a missing verdict is presumed online)."""
    import msgpack

    from fnlb.cluster.health_merge import Verdict
    from fnlb.cluster.hlc import Timestamp
    from fnlb.cluster.state import verdict_stamp

    p = ClusterState("a", healthy=1, unhealthy=1)
    nodes = [f"10.0.{i // 250}.{i % 250}:80" for i in range(40)]
    for i, node in enumerate(nodes):
        p.add_node(node, 1000 + i)
        p.record_check(node, True, 2000)
        for k in range(20):
            stamp = verdict_stamp(Timestamp(3000 + 20 * i + k, 0, f"p{k}"))
            p.verdicts.merge(f"p{k}", node, Verdict(i != 7 or k != 3, stamp))
    rows = msgpack.unpackb(p.local_state(False, 4000), raw=False)["verdicts"]
    assert {r[1] for r in rows} == {nodes[7]}  # only p3 calls it offline: contested
    assert {r[0]: r[2] for r in rows} == {"a": True, **{f"p{k}": k != 3 for k in range(20)}}


def test_a_verdict_that_comes_before_its_node_is_applied_when_the_node_comes() -> None:
    """Gossip sends the newest broadcast first, so a peer relaying a node and a verdict on it
    (both learned in one push-pull) can deliver the verdict first; dropped, an "offline"
    was lost until the next push-pull."""
    peers = cluster()
    peers["a"].add_node("n:1", 1000)
    entry = peers["a"].take_broadcasts()
    peers["a"].record_check("n:1", False, 1001)
    peers["a"].record_check("n:1", False, 1002)
    verdict = peers["a"].take_broadcasts()
    peers["b"].merge_broadcast(verdict[0][1], 1003)  # before the node
    assert peers["b"].verdicts.verdicts("n:1") == {}
    peers["b"].merge_broadcast(entry[0][1], 1004)
    assert not peers["b"].verdicts.verdict("a", "n:1").online  # type: ignore[union-attr]
    # too old by the time its node comes: not applied
    peers["c"].merge_broadcast(verdict[0][1], 1003)
    peers["c"].merge_broadcast(entry[0][1], 1003 + 31_000)
    assert peers["c"].verdicts.verdicts("n:1") == {}


def test_a_nodes_reporter_follows_the_live_peers() -> None:
    """The reporter is kept between readings; a change of the live peers must move it."""
    a = cluster()["a"]
    node = next(f"n:{i}" for i in range(100) if a.reporter(f"n:{i}") != "a")
    gone = a.reporter(node)
    a.set_alive([p for p in NAMES if p != gone])
    assert a.reporter(node) not in (gone, None)
    a.set_alive(NAMES)
    assert a.reporter(node) == gone
