"""The load feed turns the nodes' own /metrics into the capacity the router places by."""

from __future__ import annotations

import aiohttp

from fnlb.cluster.feed import METRICS_STALE_MS, capacities, node_capacity
from fnlb.fnsim import FnSimOptions, start_nodes
from fnlb.health.node_metrics import NodeMetrics
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


async def test_the_router_learns_each_fnsim_nodes_size_from_its_metrics() -> None:
    """End to end: the health checks read fnsim's /metrics, the feed's tick hands the sizes
    to the hot-set router, which then weighs a node twice as large as holding half the load."""
    small = await start_nodes(1, options=FnSimOptions(memory_mb=1024))
    large = await start_nodes(1, options=FnSimOptions(memory_mb=2048))
    try:
        nodes = [*small.addresses, *large.addresses]
        async with running_balancer(nodes=",".join(nodes), routing="hotset") as lb:
            feed = lb.feed
            assert feed is not None
            assert feed.router is not None
            router = feed.router
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
