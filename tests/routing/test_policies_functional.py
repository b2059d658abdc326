"""--routing=classic reproduces the original fnlb's choices; hotset is the default."""

from __future__ import annotations

import random

import aiohttp
import pytest

from fnlb.routing.classic import ClassicRouter
from fnlb.routing.policies import make_policy
from tests.support import Backend, running_balancer, wait_for


async def test_classic_sends_each_path_where_the_original_would() -> None:
    backends = [Backend(f"n{i}") for i in range(4)]
    for b in backends:
        await b.start()
    try:
        addrs = [b.address for b in backends]
        async with running_balancer(nodes=",".join(addrs), routing="classic") as lb:
            await wait_for(lambda: len(lb.peer.view.routable) == 4)
            original = ClassicRouter(random.Random(0))
            async with aiohttp.ClientSession() as client:
                for i in range(40):
                    path = f"/r/app/fn{i}"
                    async with client.get(f"http://{lb.listen_address}{path}") as r:
                        node = (await r.json())["node"]
                    expected = original.pick(path, addrs)  # waits are tiny: no walk
                    assert node == next(b.name for b in backends if b.address == expected)
    finally:
        for b in backends:
            await b.stop()


def test_the_default_routing_is_the_hot_set() -> None:
    from fnlb.config import Settings
    from fnlb.routing.hotset_policy import HotSetPolicy

    assert isinstance(make_policy(Settings().routing, random.Random(), lambda: 0.0), HotSetPolicy)


def test_unknown_policy_is_refused() -> None:
    with pytest.raises(ValueError, match="classic"):
        make_policy("roundrobin", random.Random(), lambda: 0.0)


async def test_hotset_spreads_a_function_whose_home_is_busy_and_reports_scale() -> None:
    """--routing=hotset end to end: a home that answers 503 busy is avoided for new calls
    (the back-off), and the lone peer publishes a scale signal on /metrics."""
    from aiohttp import web

    async def busy(request: web.Request) -> web.StreamResponse:
        return web.json_response(
            {"error": {"message": "Timed out - server too busy"}},
            status=503,
            headers={"Retry-After": "15"},
        )

    backends = [Backend(f"n{i}") for i in range(3)]
    for b in backends:
        await b.start()
    try:
        addrs = ",".join(b.address for b in backends)
        async with running_balancer(nodes=addrs, routing="hotset") as lb:
            await wait_for(lambda: len(lb.peer.view.routable) == 3)
            home = lb.peer.view.candidates("r/app/hot")[0]
            home_backend = next(b for b in backends if b.address == home)
            home_backend.handler = busy
            async with aiohttp.ClientSession() as client:
                for _ in range(20):
                    async with client.post(f"http://{lb.listen_address}/r/app/hot") as r:
                        assert r.status == 200  # spilled to the next node, never lost
                # after the first busy answer, new calls skip the home (bar rare probes)
                assert len(home_backend.seen) <= 3
                await wait_for(lambda: lb.peer.decision is not None)
                async with client.get(f"http://{lb.mgmt_address}/metrics") as r:
                    text = await r.text()
            assert "fnlb_scale_desired_nodes" in text
            assert 'fnlb_scale_recommendation{direction="hold"}' in text
    finally:
        for b in backends:
            await b.stop()


async def test_new_calls_leave_a_node_whose_answers_got_seconds_slower() -> None:
    """The default routing end to end: a node that keeps its wait header at 1.5 ms but
    answers 0.7 s late (a slow link, a hung host) loses the new calls of its functions."""
    import asyncio

    from aiohttp import web

    backends = [Backend(f"n{i}") for i in range(3)]
    for b in backends:
        await b.start()
    try:
        addrs = ",".join(b.address for b in backends)
        async with running_balancer(nodes=addrs) as lb, aiohttp.ClientSession() as client:
            await wait_for(lambda: len(lb.peer.view.routable) == 3)
            view = lb.peer.view
            slow_node = view.candidates("r/app/f0")[0]
            slow = next(b for b in backends if b.address == slow_node)
            homed = [
                f"r/app/f{i}" for i in range(40) if view.candidates(f"r/app/f{i}")[0] == slow_node
            ]
            assert len(homed) >= 2

            async def call(key: str) -> str:
                async with client.get(f"http://{lb.listen_address}/{key}") as r:
                    assert r.status == 200
                    return str((await r.json())["node"])

            for _ in range(6):  # each function's typical answer: a few ms
                assert {await call(k) for k in homed[:2]} == {slow.name}

            async def late(request: web.Request) -> web.StreamResponse:
                await asyncio.sleep(0.7)
                return await slow.default(request)

            slow.handler = late
            for _ in range(2):  # two slow answers in a row, for two functions
                await asyncio.gather(*(call(k) for k in homed[:2]))
            # the node is avoided for every function now, not only the two that were slow
            answered_by = [await call(k) for k in homed]
            assert slow.name not in answered_by
    finally:
        for b in backends:
            await b.stop()
