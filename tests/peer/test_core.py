"""The Peer: inputs in, outputs drained, the same object a lone fnlb and a cluster peer run."""

from __future__ import annotations

import random

import pytest

from fnlb.errors import RemoteProtocolError
from fnlb.peer.core import IDLE_DIGESTS, Check, Peer
from fnlb.routing.attempt import NO_ANSWER, Attempt
from fnlb.routing.hotset_policy import HotSetPolicy
from fnlb.routing.load_router import Router
from fnlb.routing.policies import RendezvousPolicy

T0_MS = 1_800_000_000_000


class Clock:
    def __init__(self) -> None:
        self.ms = T0_MS

    def __call__(self) -> int:
        return self.ms

    @property
    def s(self) -> float:
        return self.ms / 1000


def peer(name: str, clock: Clock, **kw: object) -> Peer:
    return Peer(name, routing=RendezvousPolicy(), clock_ms=clock, **kw)  # type: ignore[arg-type]


def online(p: Peer, clock: Clock, *nodes: str) -> None:
    for node in nodes:
        for _ in range(2):
            p.health_checked(node, True, clock())


def test_a_lone_peer_seeds_its_nodes_at_once_and_asks_for_their_first_checks() -> None:
    clock = Clock()
    p = peer("self", clock, gossip=False, seed=["a:1", "b:1"])
    assert p.nodes() == ["a:1", "b:1"]
    assert p.take_checks() == [Check("a:1", False), Check("b:1", False)]
    assert p.take_checks() == []
    assert list(p.view.routable) == ["a:1", "b:1"]  # unknown ones are routable until checked
    online(p, clock, "a:1")
    assert list(p.view.routable) == ["a:1"]
    p.delete_node("a:1", clock())
    assert p.nodes() == ["b:1"]
    assert p.take_save()  # seeding changed the set


def test_a_lone_peer_drops_what_gossip_would_carry() -> None:
    clock = Clock()
    p = peer("self", clock, gossip=False, seed=["a:1"])
    online(p, clock, "a:1")
    p.tick(clock.s)
    assert p.take_broadcasts() == []
    assert p.take_direct() == []
    assert p.load.peers(clock.s) == ["self"]  # its own digest is counted all the same


def test_a_cluster_peer_sends_its_digest_up_the_load_tree_and_falls_silent_when_idle() -> None:
    clock = Clock()
    p = peer("b", clock)
    p.members_changed(["a", "b"])  # "a" sorts first: it is the root, "b" its child
    sent: list[tuple[str, bytes, bytes]] = []
    for _ in range(10):
        p.tick(clock.s)
        sent += p.take_sends()
        clock.ms += 300
    assert [(to, key) for to, key, _p in sent] == [("a", b"u/b")] * IDLE_DIGESTS
    assert p.take_direct() == []  # nothing goes to every peer any more
    p.attempt_started("f", "n:1", clock.s)
    p.tick(clock.s)
    ((to, _key, payload),) = p.take_sends()
    assert to == "a"
    root = peer("a", clock)
    root.members_changed(["a", "b"])
    root.notify_broadcast("b", b"u/b", payload)
    root.tick(clock.s)
    ((to, key, down),) = root.take_sends()  # the cluster's sum, passed down to "b"
    assert (to, key) == ("b", b"c/")
    assert root.load.function_load("f", clock.s).in_flight == 1
    p.notify_broadcast("a", key, down)
    assert p.load.function_load("f", clock.s).in_flight == 1


def test_one_attempt_record_feeds_the_load_and_the_router_once() -> None:
    clock = Clock()
    router = Router(rng=random.Random(1))
    p = Peer("self", routing=HotSetPolicy(router, lambda: clock.s), clock_ms=clock, gossip=False)
    p.attempt_started("f", "n:1", clock.s)
    assert p.local.in_flight("f", "n:1") == 1
    assert router.local_in_flight("n:1") == 1
    p.attempt_finished(Attempt("f", "n:1", "/r/a/f", 503, clock.s, None, 15.0))
    assert p.local.in_flight("f", "n:1") == 0
    assert router.local_in_flight("n:1") == 0
    assert router.backoff.avoided("f", "n:1", clock.s + 0.5)  # busy: avoided a while
    p.attempt_started("f", "n:2", clock.s)
    p.attempt_finished(Attempt("f", "n:2", "/r/a/f", NO_ANSWER, clock.s))
    assert not router.backoff.avoided("f", "n:2", clock.s + 0.5)  # no answer: no verdict here
    p.attempt_started("f", "n:2", clock.s)
    at = clock.s + 0.01
    p.attempt_finished(Attempt("f", "n:2", "/r/a/f", 200, at, 0.002, None, 0.01, at))
    rows = p.local.answers_per_second(at + 2)
    assert [(r.node, r.calls) for r in rows] == [("n:2", 1)]  # only the returned answer


def test_a_peer_that_joins_seeds_only_what_the_cluster_has_no_entry_for() -> None:
    """A fresh peer with an old -nodes list must not bring back what the cluster deleted."""
    clock = Clock()
    old = peer("old", clock, seed=["a:1", "b:1"])
    old.seed_nodes(clock())
    clock.ms += 10
    old.delete_node("a:1", clock())
    new = peer("new", clock, seed=["a:1", "c:1"])
    assert new.nodes() == []
    new.merge_remote_state(old.local_state(False), join=True)  # a joiner's own request
    assert not new.seeded
    new.merge_remote_state(old.local_state(False), join=False)  # an established peer's state
    assert new.seeded
    assert new.nodes() == ["b:1", "c:1"]
    assert new.take_save()


def test_a_peers_offline_verdict_makes_this_peer_confirm_at_once() -> None:
    clock = Clock()
    a, b = peer("a", clock, seed=["n:1"]), peer("b", clock)
    a.seed_nodes(clock())
    for p in (a, b):
        p.members_changed(["a", "b"])
    for key, payload in a.take_broadcasts():
        b.notify_broadcast("a", key, payload)
    online(a, clock, "n:1")
    online(b, clock, "n:1")
    b.take_checks()
    for _ in range(2):
        a.health_checked("n:1", False, clock())
    for key, payload in a.take_broadcasts():
        b.notify_broadcast("a", key, payload)
    assert Check("n:1", True) in b.take_checks()


def test_malformed_gossip_is_counted_not_raised_and_a_bad_hold_is_refused() -> None:
    clock = Clock()
    p = peer("a", clock)
    p.notify_broadcast("x", b"k", b"\xc1")
    p.merge_remote_state(b"\x91\x01", join=False)
    assert p.drops == {"bad_cluster_msgpack": 1, "bad_cluster_state": 1}
    with pytest.raises(RemoteProtocolError):
        p.hold_change(b"\x91\x01", clock())
    assert p.drops["not_a_node_change"] == 1


def test_a_hold_stamped_too_far_ahead_is_not_held() -> None:
    clock = Clock()
    writer, holder = peer("w", clock), peer("h", clock)
    change = writer.put_node("n:1", clock.ms + 3_600_000)  # an hour ahead of the holder
    held = holder.hold_change(change.hold, clock())
    assert not held.held
    assert held.refused_drift == 1
    ok = holder.hold_change(peer("w2", clock).put_node("m:1", clock()).hold, clock())
    assert ok.held
    assert holder.nodes() == ["m:1"]


def test_health_results_and_verdict_changes_are_counted_per_node_and_end_with_it() -> None:
    clock = Clock()
    p = peer("self", clock, gossip=False, seed=["a:1", "b:1"])
    online(p, clock, "a:1")  # two good checks: unknown -> online
    p.connect_failed("a:1", "refused", clock())
    p.health_checked("a:1", False, clock())  # the second failure: online -> offline
    p.health_checked("gone:1", True, clock())  # not in the set: not counted
    assert p.check_results == {("a:1", "ok"): 2, ("a:1", "passive_fail"): 1, ("a:1", "fail"): 1}
    assert p.state_changes == {("a:1", "online"): 1, ("a:1", "offline"): 1}
    p.delete_node("a:1", clock())
    assert p.check_results == {}
    assert p.state_changes == {}


def test_a_malformed_placement_in_a_full_state_is_dropped_alone() -> None:
    """Issue 16: the placement rides in push-pull; one a peer cannot read is counted and
    dropped, and the node set beside it still merges (a later schema costs nothing else)."""
    import msgpack

    from fnlb.payloads.envelope import unpack

    clock = Clock()
    old = peer("old", clock, seed=["a:1", "b:1"])
    old.seed_nodes(clock())
    state = unpack(old.local_state(False))
    assert "placement" not in state  # nothing placed yet: nothing sent
    state["placement"] = {"e": 1, "o": 2}
    new = peer("new", clock)
    new.merge_remote_state(msgpack.packb(state), join=False)
    assert new.nodes() == ["a:1", "b:1"]
    assert new.drops == {"bad_placement": 1}


def test_a_peers_placement_report_carries_its_epoch_and_digest() -> None:
    """`GET /1/lb/cluster`'s "placement": the digest is the one peers rank by, so equal
    digests mean the peers hold the same placement."""
    from fnlb.routing.admission import Admitted, Placed

    clock = Clock()
    p = peer("a", clock)
    assert p.control.placement_report() == {"protected": {}, "tail_nodes": []}
    adm = p.control.admission
    assert adm is not None
    nodes = ("n1:1", "n2:1", "n3:1")
    placed = Placed(5, nodes, 2, False, Admitted({"f": "n2:1"}, ("n3:1",)))
    adm.observe(5 * 30_000, {"f": 1.0}, {}, 1.0, 0)
    assert adm.offer(placed)
    report = p.control.placement_report()
    assert report == {
        "protected": {"f": "n2:1"},
        "tail_nodes": ["n3:1"],
        "epoch": 5,
        "origin": 2,
        "young": False,
        "digest": placed.digest.hex(),
    }
    other = Placed(5, nodes, 2, False, Admitted({"f": "n1:1"}, ("n3:1",)))
    assert other.digest != placed.digest


def hotset_peer(name: str, clock: Clock, nodes: list[str]) -> Peer:
    router = Router(rng=random.Random(1))
    p = Peer(name, routing=HotSetPolicy(router, lambda: clock.s), clock_ms=clock, seed=nodes)
    p.seed_nodes(clock())
    online(p, clock, *nodes)
    return p


def test_a_joining_peer_takes_the_clusters_placement_before_its_first_tick() -> None:
    """Issue 16: a peer's join is a push-pull that comes before its first tick; the
    placement it carries is taken then (dated by the wall clock) and reaches the router at
    the first tick. A peer that routes to other nodes does not take it."""
    from fnlb.routing.admission import Admitted, Placed
    from fnlb.routing.placement import EPOCH_MS

    clock = Clock()
    nodes = ["n1:1", "n2:1", "n3:1"]
    old = hotset_peer("old", clock, nodes)
    adm = old.control.admission
    assert adm is not None
    epoch = clock() // EPOCH_MS
    placed = Placed(epoch, old.view.routable, epoch - 3, False, Admitted({"f": "n2:1"}, ("n3:1",)))
    adm.observe(epoch * EPOCH_MS, {"f": 1.0}, {}, 1.0, 0)
    assert adm.offer(placed)

    new = hotset_peer("new", clock, nodes)
    assert new.view.routable == old.view.routable
    new.merge_remote_state(old.local_state(False), join=False)
    new_adm = new.control.admission
    assert new_adm is not None
    assert new_adm.placed is not None
    assert new_adm.placed.digest == placed.digest
    assert new.control.homes == {}
    new.tick(clock.s)
    assert new.control.homes == {"f": "n2:1"}
    assert new.control.tail == ("n3:1",)

    other = hotset_peer("other", clock, ["n1:1", "n2:1"])  # routes to two of the three
    other.merge_remote_state(old.local_state(False), join=False)
    assert other.control.admission is not None
    assert other.control.admission.placed is None


def test_a_placement_is_not_taken_from_a_full_state_dropped_as_malformed() -> None:
    import msgpack

    from fnlb.payloads.envelope import unpack

    clock = Clock()
    old = hotset_peer("old", clock, ["n1:1", "n2:1", "n3:1"])
    state = unpack(old.local_state(False))
    state["placement"] = {"e": 1}  # would be counted as bad_placement if read
    state["verdicts"] = [["p", "n1:1", True]]  # a verdict of three fields: the state is bad
    new = peer("new", clock)
    new.merge_remote_state(msgpack.packb(state), join=False)
    assert "bad_placement" not in new.drops
    assert new.drops


def test_a_young_peer_asks_gossip_for_a_push_pull_and_a_lone_one_never_does() -> None:
    """The control loop's ask (a peer started less than a window ago, a tick into an epoch)
    is drained by the shell, which hands it to gossip; a lone fnlb has nobody to ask."""
    from fnlb.routing.placement import EPOCH_MS

    nodes = ["n1:1", "n2:1", "n3:1"]
    clock = Clock()
    clock.ms = (clock.ms // EPOCH_MS + 1) * EPOCH_MS + 1500  # the first tick reads its first cut
    router = Router(rng=random.Random(1))
    lone = Peer("self", routing=HotSetPolicy(router, lambda: clock.s), clock_ms=clock, gossip=False)
    member = hotset_peer("member", clock, nodes)
    asked = {"self": 0, "member": 0}
    for _ in range(8):
        for p in (lone, member):  # load: an idle cluster has no placement to agree on
            at = clock.s
            p.attempt_started("r/app/f", "n1:1", at)
            p.attempt_finished(
                Attempt("r/app/f", "n1:1", "/r/app/f", 200, at, 0.002, None, 0.01, at)
            )
            p.tick(clock.s)
            asked[p.name] += p.take_push_pull()
        clock.ms += 1000
    assert asked == {"self": 0, "member": 3}  # none of the cluster's placement came
