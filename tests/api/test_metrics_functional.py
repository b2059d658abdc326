"""`/metrics` on the management port: node states, per-node load, gossip figures in a cluster."""

from __future__ import annotations

import aiohttp

from testkit.peers import peers
from tests.support import Backend, running_balancer, wait_for


async def test_metrics_show_nodes_and_load() -> None:
    backend = Backend("n")
    await backend.start()
    try:
        async with running_balancer(nodes=f"{backend.address},127.0.0.1:1") as lb:
            await wait_for(lambda: lb.peer.view.states.get(backend.address) == "online")
            await wait_for(lambda: lb.peer.view.states.get("127.0.0.1:1") == "offline")
            async with aiohttp.ClientSession() as client:
                for _ in range(3):
                    async with client.get(f"http://{lb.listen_address}/r/a/b") as r:
                        await r.read()
                async with client.get(f"http://{lb.mgmt_address}/metrics") as r:
                    assert r.status == 200
                    text = await r.text()
            assert 'fnlb_nodes{state="online"} 1.0' in text
            assert 'fnlb_nodes{state="offline"} 1.0' in text
            assert f'fnlb_node_calls_per_second{{node="{backend.address}"}}' in text
            assert "fnlb_peers" not in text
    finally:
        await backend.stop()


async def test_metrics_in_a_cluster_count_peers() -> None:
    async with (
        peers(2) as group,
        aiohttp.ClientSession() as client,
        client.get(f"http://{group[0].mgmt_address}/metrics") as r,
    ):
        text = await r.text()
    assert 'fnlb_peers{state="alive"} 2.0' in text
    assert 'fnlb_gossip_packets_total{direction="sent"}' in text
    assert 'fnlb_gossip_bytes_total{direction="received",proto="udp"}' in text
    assert 'fnlb_gossip_streams_total{side="opened"}' in text
