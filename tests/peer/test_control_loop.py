"""The routing control loop turns the nodes' own /metrics into the capacity the router places by."""

from __future__ import annotations

import aiohttp

from fnlb.cluster.load import ClusterLoad, LocalLoad
from fnlb.cluster.view import NodeView
from fnlb.fnsim import FnSimOptions, start_nodes
from fnlb.payloads.node_metrics import NodeMetrics
from fnlb.peer.control_loop import (
    METRICS_STALE_MS,
    ControlLoop,
    capacities,
    metrics_stale_ms,
    node_capacity,
)
from fnlb.routing.admission import Admission
from fnlb.routing.load_router import Router
from tests.support import running_balancer, wait_for

MIB = 1024 * 1024


def reading(
    used_mb: float, avail_mb: float, running: float = 0, queued: float = 0, at: int = 0
) -> NodeMetrics:
    return NodeMetrics(queued, running, used_mb * MIB, avail_mb * MIB, 0.0, at)


def test_a_node_full_of_idle_containers_or_queued_starts_is_not_full() -> None:
    """Idle containers hold memory but Fn evicts them for new ones, and queued calls mostly
    wait for a container start: only running calls fill a node."""
    idle = node_capacity(reading(1024, 0))
    assert idle.slots == 8
    assert idle.used == 0.0
    starting = node_capacity(reading(1024, 0, running=2, queued=6))
    assert starting.used == 0.25
    busy = node_capacity(reading(1024, 0, running=8, queued=2))
    assert busy.slots == 8
    assert busy.used == 1.0
    half = node_capacity(reading(512, 1536, running=8))
    assert half.slots == 16
    assert half.used == 0.5


def test_a_node_reporting_no_memory_counts_as_an_average_one() -> None:
    assert node_capacity(reading(0, 0)).slots == 8


def test_only_routable_nodes_with_fresh_readings_get_a_capacity() -> None:
    now = 1_800_000_000_000
    readings = {
        "a:1": reading(1024, 1024, at=now - 1000),
        "b:1": reading(1024, 0, at=now - METRICS_STALE_MS - 1),  # stale
        "c:1": reading(1024, 0, at=now),  # not routable
    }
    caps = capacities(readings, {"a:1", "b:1"}, now)
    assert set(caps) == {"a:1"}
    assert caps["a:1"].slots == 16


def test_a_reading_stays_usable_for_five_check_intervals_and_at_least_15_s() -> None:
    """With `-hc-interval=30` a fixed 15 s dropped every node's size half of the time, and
    admission re-sized the protected set each time it came and went."""
    now = 1_800_000_000_000
    readings = {"a:1": reading(1024, 1024, at=now - 20_000)}  # 20 s old
    assert capacities(readings, {"a:1"}, now, metrics_stale_ms(3.0)) == {}
    assert set(capacities(readings, {"a:1"}, now, metrics_stale_ms(30.0))) == {"a:1"}
    assert metrics_stale_ms(30.0) == 150_000
    assert metrics_stale_ms(0.2) == METRICS_STALE_MS  # quick checks: never less than 15 s


async def test_the_health_checks_interval_sets_when_a_reading_goes_stale() -> None:
    async with running_balancer(hc_interval=30.0) as lb:
        assert lb.peer.control.metrics_stale_ms == 150_000


async def test_the_router_learns_each_fnsim_nodes_size_from_its_metrics() -> None:
    """End to end: the health checks read fnsim's /metrics, the feed's tick hands the sizes
    to the hot-set router, which then weighs a node twice as large as holding half the load."""
    small = await start_nodes(1, options=FnSimOptions(memory_mb=1024))
    large = await start_nodes(1, options=FnSimOptions(memory_mb=2048))
    try:
        nodes = [*small.addresses, *large.addresses]
        async with running_balancer(nodes=",".join(nodes), routing="hotset") as lb:
            router = lb.peer.control.router
            assert router is not None
            await wait_for(lambda: len(router.shared.capacity) == 2, within=10.0)
            assert router.shared.capacity[small.addresses[0]].slots == 8
            assert router.shared.capacity[large.addresses[0]].slots == 16
            assert (
                router.shared.weights[large.addresses[0]]
                < router.shared.weights[small.addresses[0]]
            )
            async with (
                aiohttp.ClientSession() as client,
                client.get(f"http://{lb.listen_address}/r/app/f") as r,
            ):
                assert r.status == 200
    finally:
        await small.close()
        await large.close()


def test_homes_are_placed_at_aligned_epochs_and_when_the_nodes_change() -> None:
    """Every peer places at the same cuts from the same settled load, so homes agree; in
    between they hold still, so a function's containers are not abandoned every second."""
    from fnlb.cluster.load import ClusterLoad, LocalLoad
    from fnlb.cluster.view import NodeView
    from fnlb.peer.control_loop import ControlLoop
    from fnlb.routing.load_router import Router
    from fnlb.routing.placement import EPOCH_MS

    nodes = [f"10.0.0.{i}:8080" for i in range(1, 6)]
    current = [NodeView(1, dict.fromkeys(nodes, "online"))]
    local, cluster, router = LocalLoad(epoch=1), ClusterLoad(), Router()
    feed = ControlLoop(router, admission=False)  # placed homes (issue 5)

    def tick(now: float) -> None:
        feed.tick(now, cluster, local, current[0], {})

    start = (1_800_000_000_000 // EPOCH_MS + 1) * EPOCH_MS / 1000  # an epoch boundary, in s

    def load(fn: str, calls: int, at: float) -> None:
        for i in range(calls):
            local.call_started(fn, nodes[0], at - 1 + i / calls)
            local.call_finished(fn, nodes[0], 200, 0.0, 0.01, at - 1 + i / calls)
        cluster.merge("p", local.digest(at, stamp_ms=int(at * 1000)), at)

    for k in range(8):
        load(f"r/app/f{k}", 20, start - 3)
    tick(start + 1.5)  # the first tick places at once
    first = dict(feed.homes)
    assert len(first) == 8
    assert router.shared.homes == first
    assert sorted(list(first.values()).count(n) for n in nodes) == [1, 1, 2, 2, 2]
    for at in (start + 8, start + EPOCH_MS / 1000 - 1):
        for k in range(8, 24):
            load(f"r/app/f{k}", 40, at)
        if at == start + 8:
            tick(start + 10.5)  # same epoch: nothing moves
            assert feed.homes == first
    tick(start + EPOCH_MS / 1000 + 1.5)  # next epoch: the new hot functions are placed
    assert len(feed.homes) == 16
    assert feed.homes != first
    placed = dict(feed.homes)
    current[0] = NodeView(2, dict.fromkeys(nodes[:4], "online"))
    tick(start + EPOCH_MS / 1000 + 2.5)  # a node left: placed again at once
    assert feed.homes != placed
    assert nodes[4] not in feed.homes.values()


def test_a_peer_started_mid_epoch_places_homes_once_it_knows_the_load() -> None:
    """Its first tick sees no settled load yet; it must not keep that empty placement until
    the next epoch while the other peers route by placed homes."""
    from fnlb.cluster.load import ClusterLoad, LocalLoad
    from fnlb.cluster.view import NodeView
    from fnlb.peer.control_loop import ControlLoop
    from fnlb.routing.load_router import Router
    from fnlb.routing.placement import EPOCH_MS

    nodes = [f"10.0.0.{i}:8080" for i in range(1, 6)]
    view = NodeView(1, dict.fromkeys(nodes, "online"))
    start = (1_800_000_000_000 // EPOCH_MS + 1) * EPOCH_MS / 1000 + 12  # mid-epoch, in s
    local, old_hand = LocalLoad(epoch=1), ClusterLoad()
    for k in range(8):
        fn = f"r/app/f{k}"
        for i in range(20):
            local.call_started(fn, nodes[0], start - 4 + i / 20)
            local.call_finished(fn, nodes[0], 200, 0.0, 0.01, start - 4 + i / 20)
    digest = local.digest(start - 3, stamp_ms=int((start - 3) * 1000))
    old_hand.merge("p", digest, start - 3)
    others = ControlLoop(Router())
    others.tick(
        start + 1.5, old_hand, LocalLoad(epoch=2), view, {}
    )  # a peer that has known the load all along
    assert len(others.homes) == 8

    newcomer_load = ClusterLoad()
    newcomer = ControlLoop(Router())
    newcomer_local = LocalLoad(epoch=3)
    newcomer.tick(
        start + 0.5, newcomer_load, newcomer_local, view, {}
    )  # before any digest reached it
    assert newcomer.homes == {}
    newcomer_load.merge("p", digest, start + 0.8)  # the digest arrives
    newcomer.tick(
        start + 1.5, newcomer_load, newcomer_local, view, {}
    )  # same epoch: placed now, not 30 s later
    assert newcomer.homes == others.homes
    placed = dict(newcomer.homes)
    for k in range(8, 24):  # new hot functions: they wait for the next epoch
        fn = f"r/app/f{k}"
        for i in range(40):
            local.call_started(fn, nodes[1], start + 2 + i / 40)
            local.call_finished(fn, nodes[1], 200, 0.0, 0.01, start + 2 + i / 40)
    newcomer_load.merge("p", local.digest(start + 3, stamp_ms=int((start + 3) * 1000)), start + 3)
    newcomer.tick(start + 5.5, newcomer_load, newcomer_local, view, {})
    assert newcomer.homes == placed


def test_a_peer_that_skips_a_cut_folds_in_the_same_settled_tables_as_one_that_did_not() -> None:
    """Admission's scores age per settled cut: a peer whose pump ran late and skipped a cut
    reads it back, so its scores equal those of a peer that ticked at every cut (before, the
    README demo's peers placed differently for a minute after a burst on a loaded machine)."""
    from fnlb.cluster.load import ClusterLoad, LocalLoad
    from fnlb.cluster.view import NodeView
    from fnlb.peer.control_loop import ControlLoop
    from fnlb.routing.load_router import Router

    nodes = [f"10.0.0.{i}:8080" for i in range(1, 6)]
    view = NodeView(1, dict.fromkeys(nodes, "online"))
    local, cluster = LocalLoad(epoch=1), ClusterLoad()
    steady, late = ControlLoop(Router()), ControlLoop(Router())
    start = 1_800_000_000.0
    for second in range(12):
        at = start + second
        calls = 40 if second in (4, 5) else 4  # a burst: the tables differ cut to cut
        for i in range(calls):
            fn = f"r/app/f{(second + i) % 6}"
            local.call_started(fn, nodes[i % 5], at - 1 + i / calls)
            local.call_finished(fn, nodes[i % 5], 200, 0.0, 0.01, at - 1 + i / calls)
        cluster.merge("p", local.digest(at, stamp_ms=int(at * 1000)), at)
        steady.tick(at + 0.5, cluster, local, view, {})
        if second not in (5, 6):  # this peer's pump stalled over two cuts
            late.tick(at + 0.5, cluster, local, view, {})
    a, b = steady.admission, late.admission
    assert a is not None
    assert b is not None
    assert a.last_cut == b.last_cut
    assert a.scores == b.scores
    assert a.scores


def test_a_peer_that_ticks_late_into_an_epoch_places_as_of_its_first_cut() -> None:
    """Every peer places an epoch as of the epoch's first cut: a peer whose pump stalled over
    it places two ticks later from the same cuts, not from the newer ones it has read by then
    (a function first called since would be in its placement and not in the others')."""
    from fnlb.cluster.load import ClusterLoad, LocalLoad
    from fnlb.cluster.view import NodeView
    from fnlb.peer.control_loop import ControlLoop
    from fnlb.routing.admission import NONE, place_from
    from fnlb.routing.load_router import Router
    from fnlb.routing.placement import EPOCH_MS

    nodes = [f"10.0.0.{i}:8080" for i in range(1, 6)]
    view = NodeView(1, dict.fromkeys(nodes, "online"))
    local, cluster = LocalLoad(epoch=1), ClusterLoad()
    steady, late = ControlLoop(Router()), ControlLoop(Router())
    boundary = (1_800_000_000_000 // EPOCH_MS + 1) * EPOCH_MS / 1000  # an epoch starts, in s
    start = boundary - 8
    for second in range(14):
        at = start + second
        fns = [f"r/app/f{k}" for k in range(6)] + (["r/app/new"] * 6 if at > boundary else [])
        for i, fn in enumerate(fns):
            local.call_started(fn, nodes[i % 5], at - 1 + i / len(fns))
            local.call_finished(fn, nodes[i % 5], 200, 0.0, 0.01, at - 1 + i / len(fns))
        cluster.merge("p", local.digest(at, stamp_ms=int(at * 1000)), at)
        steady.tick(at + 0.5, cluster, local, view, {})
        if not boundary <= at + 0.5 - 1 < boundary + 2:  # stalled over the epoch's first cuts
            late.tick(at + 0.5, cluster, local, view, {})
    assert steady.cut == late.cut
    assert steady.homes == late.homes
    assert steady.tail == late.tail
    assert "r/app/new" not in steady.homes
    adm = late.admission
    assert adm is not None
    # placed as of the cut it ticked at, the newcomer would be in (a placement of this
    # epoch is kept as it is once made: placed afresh here)
    size = dict.fromkeys(nodes, adm.slots_per_node)
    now = place_from(adm.scores_at(late.cut), view.routable, view.candidates, size, NONE)
    assert "r/app/new" in now.homes


def _young_loop() -> tuple[list[str], NodeView, LocalLoad, ClusterLoad, ControlLoop, Admission]:
    """A control loop over five online nodes that has read nothing yet: its peer has just
    started."""
    nodes = [f"10.0.0.{i}:8080" for i in range(1, 6)]
    view = NodeView(1, dict.fromkeys(nodes, "online"))
    loop = ControlLoop(Router())
    assert loop.admission is not None
    return nodes, view, LocalLoad(epoch=1), ClusterLoad(), loop, loop.admission


def test_a_young_peer_asks_for_a_push_pull_a_tick_into_each_epoch() -> None:
    """A peer started less than a window ago asks gossip for an exchange a tick into each
    epoch, when its partner has placed for the epoch too, so that it takes the cluster's
    placement then rather than at the regular push-pull, up to an epoch later. It asks
    again while none comes (at most 3 times an epoch), not once it holds one from a peer
    that read the whole window, and never once its own window is full."""
    from fnlb.peer.control_loop import ASK_AGAIN_MS, ASKS_PER_EPOCH
    from fnlb.routing.admission import WINDOW_MS, Admitted, Placed
    from fnlb.routing.placement import EPOCH_MS

    nodes, view, local, cluster, loop, adm = _young_loop()
    boundary = (1_800_000_000_000 // EPOCH_MS + 1) * EPOCH_MS  # an epoch starts, in ms
    start = boundary / 1000 - 10  # started 10 s before it
    taken = boundary // EPOCH_MS + 1  # the epoch an exchange brings the cluster's placement
    asks: list[int] = []
    for second in range((WINDOW_MS + 2 * EPOCH_MS) // 1000):
        at = start + second
        for i in range(6):
            fn = f"r/app/f{i}"
            local.call_started(fn, nodes[i % 5], at - 1 + i / 6)
            local.call_finished(fn, nodes[i % 5], 200, 0.0, 0.01, at - 1 + i / 6)
        cluster.merge("p", local.digest(at, stamp_ms=int(at * 1000)), at)
        loop.tick(at + 0.5, cluster, local, view, {})
        if loop.take_push_pull():
            asks.append(loop.cut)
            assert not loop.take_push_pull()  # drained
            if loop.cut // EPOCH_MS == taken:  # this exchange brings the cluster's placement
                theirs = Placed(taken, view.routable, taken - 5, False, Admitted({"f": nodes[1]}))
                assert adm.offer(theirs)
    first = int(start * 1000)  # its first cut with load (mid-epoch): nothing held yet
    one = boundary + 1000  # a tick into the next epoch
    thrice = [k * ASK_AGAIN_MS for k in range(ASKS_PER_EPOCH)]  # none comes: three asks
    assert asks == [
        *(first + k for k in thrice),  # the epoch it started in: at once
        *(one + k for k in thrice),
        one + EPOCH_MS,  # the exchange brought the cluster's: asked once
        *(one + 2 * EPOCH_MS + k for k in thrice),  # the next epoch: asked again
        *(one + 3 * EPOCH_MS + k for k in thrice),
    ], [(c // EPOCH_MS, c % EPOCH_MS) for c in asks]
    assert not adm.young_at(loop.cut)
    assert asks[-1] < loop.cut - EPOCH_MS  # its window full: no more asks


def test_a_young_peer_of_an_idle_cluster_asks_for_no_push_pull() -> None:
    """With no load in the window there is no placement to agree on: a young peer of an
    idle cluster leaves gossip's push-pull to its own schedule."""
    from fnlb.routing.admission import WINDOW_MS

    _nodes, view, local, cluster, loop, adm = _young_loop()
    start = 1_800_000_000.0
    for second in range(WINDOW_MS // 1000):
        at = start + second
        cluster.merge("p", local.digest(at, stamp_ms=int(at * 1000)), at)
        loop.tick(at + 0.5, cluster, local, view, {})
        assert adm.young_at(loop.cut)
        assert not loop.take_push_pull()
    assert not adm.loaded
