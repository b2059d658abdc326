"""Active checks against real sockets: version gate, thresholds, first check decides."""

from __future__ import annotations

from collections.abc import Mapping

from aiohttp import web

from tests.support import Backend, running_balancer, wait_for


async def test_first_check_decides_and_thresholds_hold() -> None:
    good, old = Backend("good"), Backend("old")
    old.version = "0.0.100"
    for b in (good, old):
        await b.start()
    try:
        async with running_balancer(
            nodes=f"{good.address},{old.address}", hc_unhealthy=3, hc_healthy=2
        ) as lb:

            def view() -> Mapping[str, str]:
                return lb.peer.view.states

            await wait_for(lambda: view() == {good.address: "online", old.address: "offline"})
            assert lb.peer.view.routable == (good.address,)
            health = lb.peer.health(old.address)
            assert health is not None
            assert "incompatible API version" in health.last_error

            good.version_status = 500
            await wait_for(lambda: (lb.peer.health(good.address) or health).failures >= 1)
            assert view()[good.address] == "online"  # one failure is not enough (needs 3)
            await wait_for(lambda: view()[good.address] == "offline")
            good.version_status = 200
            await wait_for(lambda: (lb.peer.health(good.address) or health).successes >= 1)
            assert view()[good.address] == "offline"  # needs 2 successes
            await wait_for(lambda: view()[good.address] == "online")
    finally:
        for b in (good, old):
            await b.stop()


async def test_min_api_version_and_path_are_honoured() -> None:
    b = Backend("n")
    b.version = "0.3.579"
    await b.start()
    try:
        async with running_balancer(nodes=b.address, min_api_version="0.3.580") as lb:
            await wait_for(lambda: lb.peer.view.states[b.address] == "offline")
        async with running_balancer(nodes=b.address, hc_path="/missing") as lb:
            await wait_for(lambda: lb.peer.view.states[b.address] == "offline")
    finally:
        await b.stop()


async def test_a_node_that_comes_back_is_used_again() -> None:
    b = Backend("n")
    await b.start()
    port = b.port
    try:
        async with running_balancer(nodes=b.address, hc_unhealthy=1) as lb:
            await wait_for(lambda: lb.peer.view.states[b.address] == "online")
            await b.stop()
            await wait_for(lambda: lb.peer.view.states[b.address] == "offline")
            await b.start(port)
            await wait_for(lambda: lb.peer.view.states[b.address] == "online")
    finally:
        await b.stop()


async def test_a_huge_metrics_answer_is_not_read() -> None:
    async def endless(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        await resp.prepare(request)
        await resp.write(b"fn_util_mem_avail 5\n")  # looks like Fn, then never ends
        for _ in range(3):  # 3 MiB more, unsized
            await resp.write(b"# " + b"x" * (1 << 20) + b"\n")
        return resp

    b = Backend("n", endless)
    b.record_metrics = True
    await b.start()
    try:
        async with running_balancer(nodes=b.address) as lb:
            await wait_for(lambda: len(b.seen) >= 3)  # two reads done, a third begun
            await wait_for(lambda: lb.peer.view.states[b.address] == "online")
            assert lb.peer.node_metrics == {}
    finally:
        await b.stop()
