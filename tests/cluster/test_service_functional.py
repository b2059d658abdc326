"""Several fnlb peers in one process on loopback: one node list, one verdict, kept on disk."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from fnlb.api.cluster import hot_functions
from fnlb.config import Settings
from fnlb.server import Balancer
from testkit.peers import gossip_seed, peer_settings, peers
from tests.support import Backend, wait_for
from tests.support_proc import free_port


async def put(client: aiohttp.ClientSession, b: Balancer, node: str, method: str = "PUT") -> Any:
    async with client.request(
        method, f"http://{b.mgmt_address}/1/lb/nodes", json={"node": node}
    ) as r:
        assert r.status == 200, await r.text()
        return await r.json()


def everywhere(group: list[Balancer], check: Callable[[Balancer], bool]) -> Callable[[], bool]:
    return lambda: all(check(b) for b in group)


async def test_a_node_added_on_one_peer_is_routable_on_all_and_removed_everywhere() -> None:
    backend = Backend("fn")
    await backend.start()
    try:
        async with peers(3) as group, aiohttp.ClientSession() as client:
            answer = await put(client, group[0], backend.address)
            assert answer == {"msg": "node added", "held_by": 2}
            # Checked online everywhere (a node not yet checked is routable too: wait for more).
            online = {backend.address: "online"}
            await wait_for(everywhere(group, lambda b: b.peer.view.states == online), within=30)
            checksums = set()
            for b in group:
                async with client.get(f"http://{b.mgmt_address}/1/lb/cluster") as r:
                    report = await r.json()
                checksums.add(report["checksum"])
                assert report["nodes"][0]["cluster"] == "online"
                assert len(report["peers"]) == 3
            assert len(checksums) == 1
            async with client.post(f"http://{group[2].listen_address}/r/app/fn") as r:
                assert r.status == 200
            await put(client, group[1], backend.address, "DELETE")
            await wait_for(everywhere(group, lambda b: b.peer.nodes() == []), within=30)
    finally:
        await backend.stop()


async def test_a_dead_fn_node_leaves_every_peer_and_comes_back() -> None:
    backend = Backend("fn")
    await backend.start()
    port = backend.port
    try:
        async with peers(3, hc_unhealthy=1) as group, aiohttp.ClientSession() as client:
            await put(client, group[0], backend.address)
            await wait_for(everywhere(group, lambda b: bool(b.peer.view.routable)), within=30)
            await backend.stop()
            await wait_for(everywhere(group, lambda b: not b.peer.view.routable), within=30)
            await backend.start(port)
            await wait_for(everywhere(group, lambda b: bool(b.peer.view.routable)), within=30)
    finally:
        await backend.stop()


async def test_changes_survive_a_restart_from_the_state_dir(tmp_path: Path) -> None:
    # One peer: nobody else can hold a change (-write-acks 0, else 503).
    settings = peer_settings("solo", state_dir=str(tmp_path / "s"), nodes="a:1,b:2", write_acks=0)
    async with aiohttp.ClientSession() as client:
        b = Balancer(settings)
        await b.start()
        try:
            await put(client, b, "c:3")
            await put(client, b, "a:1", "DELETE")
        finally:
            await b.stop()
        b = Balancer(settings)  # same -nodes: must not bring a:1 back
        await b.start()
        try:
            assert b.peer.nodes() == ["b:2", "c:3"]
        finally:
            await b.stop()


async def test_a_lone_fnlb_answers_404_for_cluster_endpoints() -> None:
    b = Balancer(Settings(listen="127.0.0.1:0", mgmt_listen="127.0.0.1:0", workers=1))
    await b.start()
    try:
        assert b.gossip is None
        async with aiohttp.ClientSession() as client:
            for path in ("/1/lb/cluster", "/1/lb/peers"):
                async with client.get(f"http://{b.mgmt_address}{path}") as r:
                    assert r.status == 404
                    assert "--join" in (await r.json())["msg"]
    finally:
        await b.stop()
        await asyncio.sleep(0)


async def test_every_peer_knows_the_cluster_wide_load_of_a_hot_function() -> None:
    async def slow(request: web.Request) -> web.StreamResponse:
        await asyncio.sleep(0.5)
        return web.json_response({})

    backend = Backend("fn", slow)
    await backend.start()
    try:
        async with peers(3) as group, aiohttp.ClientSession() as client:
            await put(client, group[0], backend.address)
            await wait_for(everywhere(group, lambda b: bool(b.peer.view.routable)), within=30)

            async def call(b: Balancer) -> None:
                async with client.post(f"http://{b.listen_address}/r/app/hot") as r:
                    await r.read()

            # 8 calls in flight at once, through two of the three peers
            calls = asyncio.gather(*(call(group[i % 2]) for i in range(8)))
            await asyncio.sleep(0.8)  # calls last 0.5 s; keep them coming
            calls2 = asyncio.gather(*(call(group[i % 2]) for i in range(8)))

            def third_peer_sees_it() -> bool:
                hot = hot_functions(group[2].peer)
                return bool(hot) and hot[0]["function"] == "r/app/hot" and hot[0]["rate"] > 0

            await wait_for(third_peer_sees_it, within=30)
            await calls
            await calls2
            hot = hot_functions(group[2].peer)
            assert hot[0]["nodes"] == [backend.address]
    finally:
        await backend.stop()


async def test_five_peers_route_a_new_node_and_drop_a_dead_one_after_one_failed_call() -> None:
    """A node added on one peer is routable on all five; deleted through another, it is gone
    from all five; a dead one leaves them all after one failed call. The issue's figures
    (1 s to routable everywhere, ~1 s out after the first failed call) are measured by
    bench/cluster.py; here the behaviour, with generous bounds."""
    a, b = Backend("a"), Backend("b")
    for backend in (a, b):
        await backend.start()
    try:
        # Active checks every 30 s: only the passive failure and the confirmations by
        # re-check can take the dead node out within the bound below.
        async with peers(5, hc_interval=30.0) as group, aiohttp.ClientSession() as client:
            await put(client, group[0], a.address)
            await put(client, group[3], b.address)
            await wait_for(everywhere(group, lambda p: len(p.peer.view.routable) == 2), within=30)
            key = "r/app/victim"
            home = group[1].peer.view.candidates(key)[0]
            victim = a if home == a.address else b
            await victim.stop()
            loop = asyncio.get_running_loop()
            t0 = loop.time()
            async with client.post(f"http://{group[1].listen_address}/{key}") as r:
                assert r.status == 200  # served by the other node, not lost
            await wait_for(
                everywhere(group, lambda p: victim.address not in p.peer.view.routable),
                within=20,  # under the 30 s active checks: only the passive path can do it
            )
            print(f"dead node out of all 5 peers {loop.time() - t0:.2f} s after the call")
            # The node still up was added on peer 0 or 3: delete it through peer 2.
            survivor = b if victim is a else a
            await put(client, group[2], survivor.address, "DELETE")
            await wait_for(
                everywhere(group, lambda p: survivor.address not in p.peer.nodes()),
                within=10,
            )
    finally:
        for backend in (a, b):
            await backend.stop()


async def test_nodes_memory_figures_are_read_and_shared_by_every_peer() -> None:
    from fnlb.fnsim import start_nodes

    fn = await start_nodes(1)
    try:
        async with peers(3) as group, aiohttp.ClientSession() as client:
            await put(client, group[0], fn.addresses[0])

            def everyone_knows() -> bool:
                return all(
                    fn.addresses[0] in p.peer.node_metrics
                    and p.peer.node_metrics[fn.addresses[0]].mem_avail > 0
                    for p in group
                )

            await wait_for(everyone_knows, within=10)
            # Every peer reads the node itself and shares what moved: the figures agree.
            await wait_for(
                lambda: (
                    len({tuple(p.peer.node_metrics[fn.addresses[0]].to_wire()[:-1]) for p in group})
                    == 1
                ),
                within=10,
            )
    finally:
        await fn.close()


async def test_a_fresh_peer_with_an_old_nodes_list_does_not_bring_deleted_nodes_back(
    tmp_path: Path,
) -> None:
    first = Balancer(
        peer_settings("a", state_dir=str(tmp_path / "a"), nodes="x:1,y:2", write_acks=0)
    )
    await first.start()
    try:
        async with aiohttp.ClientSession() as client:
            await put(client, first, "x:1", "DELETE")
        # A new peer, no state dir, started with the list the first peer started with.
        second = Balancer(peer_settings("b", (gossip_seed(first),), nodes="x:1,y:2,z:3"))
        await second.start()
        try:
            group = [first, second]
            assert second.cluster is not None
            await wait_for(lambda: second.peer.nodes() == ["y:2", "z:3"], within=10)
            # Converged: the same entries (live and deleted) on both peers.
            await wait_for(
                lambda: len({b.peer.state.nodes.digest() for b in group if b.cluster}) == 1,
                within=10,
            )
            for b in group:
                assert b.peer.nodes() == ["y:2", "z:3"]
        finally:
            await second.stop()
    finally:
        await first.stop()


async def test_a_deleted_node_stays_deleted_across_a_restart_and_a_fresh_peer_that_seeded(
    tmp_path: Path,
) -> None:
    """Issue #11's reproduction: a deletes x and restarts from its state dir; meanwhile a
    fresh b starts with `-nodes x,y -join a`, finds a down and seeds at once. Its seeds lose
    to a's tombstone: neither ends with x (both did, before)."""
    state = str(tmp_path / "a")
    a = Balancer(peer_settings("a", state_dir=state, nodes="x:1,y:2", write_acks=0))
    await a.start()
    async with aiohttp.ClientSession() as client:
        await put(client, a, "x:1", "DELETE")
    old_seed = gossip_seed(a)
    await a.stop()
    b = Balancer(peer_settings("b", (old_seed,), nodes="x:1,y:2"))
    await b.start()
    try:
        await wait_for(lambda: b.peer.nodes() == ["x:1", "y:2"], within=10)  # seeded alone
        a = Balancer(peer_settings("a", (gossip_seed(b),), state_dir=state, write_acks=0))
        await a.start()
        try:
            group = [a, b]
            await wait_for(
                lambda: len({p.peer.state.nodes.digest() for p in group}) == 1, within=15
            )
            for p in group:
                assert p.peer.nodes() == ["y:2"]
        finally:
            await a.stop()
    finally:
        await b.stop()


async def test_a_peer_alone_or_whose_join_targets_are_down_seeds_its_nodes_list() -> None:
    alone = Balancer(peer_settings("alone", nodes="x:1,y:2"))
    await alone.start()
    try:
        assert alone.peer.nodes() == ["x:1", "y:2"]  # at once
    finally:
        await alone.stop()
    nobody = f"127.0.0.1:{free_port()}"  # the rest of the cluster is not up yet
    early = Balancer(peer_settings("early", (nobody,), nodes="x:1,y:2"))
    await early.start()
    try:
        await wait_for(lambda: early.peer.nodes() == ["x:1", "y:2"], within=10)
    finally:
        await early.stop()


async def test_stop_returns_when_a_change_to_save_arrives_in_the_same_tick() -> None:
    """Python 3.11's asyncio.wait_for kept a cancelled save loop running when the change and
    the cancel met in one tick, and stop() waited for it forever (CI hung 300 s that way)."""
    b = Balancer(peer_settings("solo", nodes="x:1"))
    await b.start()
    cluster = b.cluster
    assert cluster is not None
    try:
        await asyncio.sleep(0.05)  # the save loop is waiting for a change

        async def change_then_stop() -> None:
            cluster._peers_moved = True  # no await between the change and stop()'s cancel
            await cluster.stop()

        stopping = asyncio.ensure_future(change_then_stop())
        done, _ = await asyncio.wait({stopping}, timeout=10)  # a hang, not a speed: ample
        assert stopping in done, "stop() hung"
        stopping.result()
    finally:
        await b.stop()


async def test_an_idle_peer_stops_sending_load_digests_and_resumes_with_calls() -> None:
    """Idle digests sent on forever made an idle cluster's gossip grow with N."""
    backend = Backend("fn")
    await backend.start()
    try:
        async with peers(2) as group, aiohttp.ClientSession() as client:
            await put(client, group[0], backend.address)
            await wait_for(everywhere(group, lambda b: bool(b.peer.view.routable)), within=30)
            runtime = group[0].cluster.runtime if group[0].cluster else None
            assert runtime is not None

            def sent() -> int:
                return int(runtime.member.stats["sent_to"])

            await asyncio.sleep(1.5)  # two idle digests at most, 0.3 s apart, then silence
            quiet = sent()
            await asyncio.sleep(2.5)
            assert sent() == quiet
            async with client.post(f"http://{group[0].listen_address}/r/app/f") as r:
                assert r.status == 200
            await wait_for(lambda: sent() > quiet, within=30)
    finally:
        await backend.stop()


async def test_a_change_no_other_peer_can_hold_is_refused_503_unless_acks_may_degrade() -> None:
    """Issue #11 defect 6: a peer that saw no others (a minority of one) answered 200 with
    `held_by: 1`, exactly when "acknowledged means kept" matters. Now it says 503 (kept
    here, not acknowledged), unless the operator chose -write-acks-degraded."""
    async with peers(1) as group, aiohttp.ClientSession() as client:
        url = f"http://{group[0].mgmt_address}/1/lb/nodes"
        async with client.put(url, json={"node": "n:1"}) as r:
            assert r.status == 503
            answer = await r.json()
        assert "not acknowledged" in answer["msg"]
        assert "only 0 of the 1 other peers" in answer["msg"]
        assert group[0].peer.nodes() == ["n:1"]  # kept here, spreads when peers come
    async with peers(1, write_acks_degraded=True) as group, aiohttp.ClientSession() as client:
        answer = await put(client, group[0], "n:1")
        assert answer == {"msg": "node added", "held_by": 1}
