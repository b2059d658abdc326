"""Wait for warm through fnlb to an emulated Fn node (tests/proxy/conftest.py runs each test
on both data planes): a call whose function's one container is busy is held and released
onto that container when the busy call finishes, instead of making the node start a second
(`Fnsim-Cold`); at the maximum hold it goes on and the node starts one; a client that leaves
while held, and shutdown, end the hold.

The node's function calls take what `?ms=` says, so the first call of each test keeps the
container busy for far longer than anything else takes: what is asserted does not depend on
how fast the machine is, only on the order the calls reach the balancer (made certain by
waiting until the node runs the first one)."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator

import aiohttp
import pytest

from fnlb.config import Settings
from fnlb.fnsim import FnSimCluster, FnSimNode, FnSimOptions, start_nodes
from fnlb.server import Balancer
from tests.observe.test_metrics_functional import promtool_passes, sample, scrape
from tests.support import BALANCER_DEFAULTS, running_balancer, wait_for

OPTIONS = FnSimOptions(cold_start_ms=300.0, default_ms=20.0, shutdown_timeout_s=2.0, seed=1)
F = "/r/app/f"


@pytest.fixture
async def fn() -> AsyncIterator[FnSimCluster]:
    async with await start_nodes(1, options=OPTIONS) as c:
        yield c


async def call(client: aiohttp.ClientSession, lb: Balancer, ms: int) -> tuple[int, str]:
    """A call of F that runs `ms`: its status and `Fnsim-Cold` header."""
    async with client.get(f"http://{lb.listen_address}{F}?ms={ms}") as r:
        await r.read()
        return r.status, r.headers.get("Fnsim-Cold", "")


async def warmed(client: aiohttp.ClientSession, lb: Balancer, node: FnSimNode) -> None:
    """F's one container started, then a warm answer: the balancer knows F answers fast."""
    await wait_for(lambda: len(lb.peer.view.routable) == 1)
    assert await call(client, lb, 20) == (200, "true")
    assert await call(client, lb, 20) == (200, "false")
    assert node.stats().cold_starts == 1


async def busy(
    client: aiohttp.ClientSession, lb: Balancer, node: FnSimNode, ms: int
) -> asyncio.Task[tuple[int, str]]:
    """A call of F that keeps its container busy `ms`, running on the node when returned."""
    task = asyncio.create_task(call(client, lb, ms))
    await wait_for(lambda: node.stats().running == 1)
    return task


async def test_a_held_call_runs_on_the_container_that_frees(fn: FnSimCluster) -> None:
    node = fn.nodes[0]
    async with (
        running_balancer(nodes=fn.addresses[0], warm_wait="10s") as lb,
        aiohttp.ClientSession() as client,
    ):
        await warmed(client, lb, node)
        first = await busy(client, lb, node, 1000)
        second = asyncio.create_task(call(client, lb, 20))
        await wait_for(lambda: lb.warm is not None and lb.warm.rule.held == 1)
        assert await first == (200, "false")
        assert await second == (200, "false")  # no container was started for it
        assert node.stats().cold_starts == 1
        assert lb.observer.holds["released"] == 1
        assert 0.0 < lb.observer.hold_s < 10.0
        text = await scrape(str(lb.mgmt_address))
    assert sample(text, "fnlb_warm_wait_holds_total", outcome="released") == 1
    assert sample(text, "fnlb_warm_wait_holds_total", outcome="expired") == 0
    assert 0.0 < sample(text, "fnlb_warm_wait_hold_seconds_total") < 10.0
    if shutil.which("promtool") is not None:
        await promtool_passes(text)


async def test_without_it_the_node_starts_a_container(fn: FnSimCluster) -> None:
    """The same calls with -warm-wait=0: what the hold above avoids."""
    node = fn.nodes[0]
    async with (
        running_balancer(nodes=fn.addresses[0], warm_wait="0") as lb,
        aiohttp.ClientSession() as client,
    ):
        assert lb.warm is None
        await warmed(client, lb, node)
        first = await busy(client, lb, node, 1000)
        assert await call(client, lb, 20) == (200, "true")
        assert node.stats().cold_starts == 2
        await first
        assert sum(lb.observer.holds.values()) == 0


async def test_at_the_maximum_hold_the_call_goes_on_and_fn_starts_a_container(
    fn: FnSimCluster,
) -> None:
    node = fn.nodes[0]
    async with (
        running_balancer(nodes=fn.addresses[0], warm_wait="100ms") as lb,
        aiohttp.ClientSession() as client,
    ):
        await warmed(client, lb, node)
        first = await busy(client, lb, node, 30_000)  # outlives everything below
        assert await call(client, lb, 20) == (200, "true")  # held, then sent at 0.1 s
        assert node.stats().cold_starts == 2
        assert lb.observer.holds["expired"] == 1
        assert lb.observer.hold_s >= 0.09
        first.cancel()


async def test_a_client_that_leaves_while_held_is_forgotten(fn: FnSimCluster) -> None:
    node = fn.nodes[0]
    async with (
        running_balancer(nodes=fn.addresses[0], warm_wait="10s") as lb,
        aiohttp.ClientSession() as client,
    ):
        assert lb.warm is not None
        warm = lb.warm
        await warmed(client, lb, node)
        first = await busy(client, lb, node, 30_000)
        second = asyncio.create_task(call(client, lb, 20))
        await wait_for(lambda: warm.rule.held == 1)
        second.cancel()  # the client closes its connection
        await wait_for(lambda: warm.rule.held == 0)
        assert lb.observer.holds["gone"] == 1
        assert lb.observer.errors["client_gone"] == 1
        assert node.stats().calls == 3  # the held call never reached the node
        first.cancel()


async def test_shutdown_sends_held_calls_on(fn: FnSimCluster) -> None:
    node = fn.nodes[0]
    lb = Balancer(
        Settings(
            **{
                "listen": "127.0.0.1:0",
                "mgmt_listen": "127.0.0.1:0",
                "hc_interval": 0.2,
                "workers": 1,
                **BALANCER_DEFAULTS,
                "nodes": fn.addresses[0],
                "warm_wait": "10s",
                "shutdown_timeout": 20.0,
            }
        )
    )
    await lb.start()
    stopped = False
    try:
        async with aiohttp.ClientSession() as client:
            assert lb.warm is not None
            warm = lb.warm
            await warmed(client, lb, node)
            first = await busy(client, lb, node, 2000)
            second = asyncio.create_task(call(client, lb, 20))
            await wait_for(lambda: warm.rule.held == 1)
            stopping = asyncio.create_task(lb.stop())
            stopped = True
            assert await second == (200, "true")  # drained: sent at once, Fn starts one
            assert await first == (200, "false")
            await stopping
        assert lb.observer.holds["drained"] == 1
    finally:
        if not stopped:
            await lb.stop()
