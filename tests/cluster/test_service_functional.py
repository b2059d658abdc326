"""Several fnlb peers in one process on loopback: one node list, one verdict, kept on disk."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp

from fnlb.config import Settings
from fnlb.server import Balancer
from tests.support import Backend, wait_for
from tests.support_cluster import peer_settings, peers


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
            await wait_for(
                everywhere(group, lambda b: b.registry.view.routable == (backend.address,)),
                within=5,
            )
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
            await wait_for(everywhere(group, lambda b: b.registry.nodes() == []), within=5)
    finally:
        await backend.stop()


async def test_a_dead_fn_node_leaves_every_peer_and_comes_back() -> None:
    backend = Backend("fn")
    await backend.start()
    port = backend.port
    try:
        async with peers(3, hc_unhealthy=1) as group, aiohttp.ClientSession() as client:
            await put(client, group[0], backend.address)
            await wait_for(everywhere(group, lambda b: bool(b.registry.view.routable)), within=5)
            await backend.stop()
            await wait_for(everywhere(group, lambda b: not b.registry.view.routable), within=5)
            await backend.start(port)
            await wait_for(everywhere(group, lambda b: bool(b.registry.view.routable)), within=5)
    finally:
        await backend.stop()


async def test_changes_survive_a_restart_from_the_state_dir(tmp_path: Path) -> None:
    settings = peer_settings("solo", state_dir=str(tmp_path / "s"), nodes="a:1,b:2")
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
            assert b.registry.nodes() == ["b:2", "c:3"]
        finally:
            await b.stop()


async def test_a_lone_fnlb_answers_404_for_cluster_endpoints() -> None:
    b = Balancer(Settings(listen="127.0.0.1:0", mgmt_listen="127.0.0.1:0"))
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
