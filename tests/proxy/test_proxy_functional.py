"""The proxy on real loopback sockets: forwarding, retries that never resend, errors."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web

from fnlb.server import Balancer
from tests.support import Backend, running_balancer, wait_for


@pytest.fixture
async def backends() -> AsyncIterator[list[Backend]]:
    nodes = [Backend(f"n{i}") for i in range(3)]
    for b in nodes:
        await b.start()
    yield nodes
    for b in nodes:
        await b.stop()


@pytest.fixture
async def client() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def url(balancer: Balancer, path: str) -> str:
    return f"http://{balancer.listen_address}{path}"


async def all_online(balancer: Balancer, count: int) -> None:
    await wait_for(lambda: sum(s == "online" for s in balancer.peer.view.states.values()) == count)


async def test_every_method_query_and_end_to_end_headers_pass_through(
    backends: list[Backend], client: aiohttp.ClientSession
) -> None:
    async with running_balancer(nodes=backends[0].address) as lb:
        await all_online(lb, 1)
        for method in ("GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"):
            async with client.request(
                method,
                url(lb, "/r/app/fn?x=1&y=%20z"),
                data=b"payload" if method in ("POST", "PUT", "PATCH") else None,
                headers={"Fn-Call-Id": "abc", "X-Custom": "v", "Connection": "keep-alive, X-Hop",
                         "X-Hop": "secret", "TE": "trailers", "Upgrade": "h2c"},
            ) as resp:  # fmt: skip
                assert resp.status == 200
                assert resp.headers["Fn-Call-Id"].startswith("call-")
                await resp.read()
        seen = backends[0].seen
        assert [s.method for s in seen] == ["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"]
        for s in seen:
            assert s.path_qs == "/r/app/fn?x=1&y=%20z"
            assert s.headers["Fn-Call-Id"] == "abc"
            assert s.headers["X-Custom"] == "v"
            assert "X-Hop" not in s.headers
            assert "TE" not in s.headers
            assert "Upgrade" not in s.headers
            assert s.headers["X-Forwarded-For"] == "127.0.0.1"
            assert s.headers["X-Forwarded-Proto"] == "http"
            assert s.headers["X-Forwarded-Host"] == str(lb.listen_address)
        assert seen[1].body_len == len(b"payload")


async def test_the_proxy_adds_no_headers_of_its_own_choosing(
    backends: list[Backend],
) -> None:
    async with (
        running_balancer(nodes=backends[0].address) as lb,
        aiohttp.ClientSession(skip_auto_headers=("User-Agent", "Accept-Encoding", "Accept")) as c,
    ):
        await all_online(lb, 1)
        async with c.get(url(lb, "/r/a/b")) as resp:
            assert resp.status == 200
    seen = backends[0].seen[0].headers
    for name in ("User-Agent", "Accept-Encoding", "Accept"):
        assert name not in seen  # a client that did not ask for gzip must not get it


async def test_x_forwarded_for_is_appended(
    backends: list[Backend], client: aiohttp.ClientSession
) -> None:
    async with running_balancer(nodes=backends[0].address) as lb:
        await all_online(lb, 1)
        headers = {"X-Forwarded-For": "203.0.113.7", "X-Forwarded-Proto": "https"}
        async with client.get(url(lb, "/r/a/b"), headers=headers) as resp:
            assert resp.status == 200
        seen = backends[0].seen[0].headers
        assert seen["X-Forwarded-For"] == "203.0.113.7, 127.0.0.1"
        assert seen["X-Forwarded-Proto"] == "https"


async def test_one_function_goes_to_one_node_and_functions_spread(
    backends: list[Backend], client: aiohttp.ClientSession
) -> None:
    async with running_balancer(nodes=",".join(b.address for b in backends)) as lb:
        await all_online(lb, 3)
        for i in range(60):
            async with client.post(url(lb, f"/r/app/fn{i % 20}?n={i}")) as resp:
                assert resp.status == 200
        homes: dict[str, set[str]] = {}
        for b in backends:
            for s in b.seen:
                homes.setdefault(s.path_qs.split("?")[0], set()).add(b.name)
        assert len(homes) == 20
        assert all(len(nodes) == 1 for nodes in homes.values())
        assert all(b.seen for b in backends)


async def test_connections_to_nodes_are_pooled(
    backends: list[Backend], client: aiohttp.ClientSession
) -> None:
    async with running_balancer(nodes=backends[0].address) as lb:
        await all_online(lb, 1)
        for _ in range(30):
            async with client.get(url(lb, "/r/app/fn")) as resp:
                await resp.read()
        assert len(backends[0].seen) == 30
        assert len(backends[0].peer_ports) <= 2


async def test_dead_node_call_goes_to_next_and_node_goes_offline_at_once(
    backends: list[Backend], client: aiohttp.ClientSession
) -> None:
    # hc_interval is long: only the passive check can take the node out quickly.
    async with running_balancer(
        nodes=",".join(b.address for b in backends), hc_interval=60.0
    ) as lb:
        await all_online(lb, 3)
        key = "r/app/victim"
        home = lb.peer.view.candidates(key)[0]
        victim = next(b for b in backends if b.address == home)
        await victim.stop()
        async with client.get(url(lb, "/r/app/victim")) as resp:
            assert resp.status == 200
            assert (await resp.json())["node"] != victim.name
        await wait_for(lambda: lb.peer.view.states[home] == "offline", within=30.0)
        assert home not in lb.peer.view.routable


async def test_busy_503_moves_the_call_to_the_next_node(
    backends: list[Backend], client: aiohttp.ClientSession
) -> None:
    async def busy(request: web.Request) -> web.StreamResponse:
        await request.read()
        return web.json_response(
            {"error": {"message": "Timed out - server too busy"}},
            status=503,
            headers={"Retry-After": "15"},
        )

    async with running_balancer(nodes=",".join(b.address for b in backends)) as lb:
        await all_online(lb, 3)
        order = lb.peer.view.candidates("r/app/hot")
        first = next(b for b in backends if b.address == order[0])
        first.handler = busy
        async with client.post(url(lb, "/r/app/hot"), data=b"x" * 1000) as resp:
            assert resp.status == 200
            body = await resp.json()
        assert body["node"] != first.name
        assert body["received"] == 1000
        assert len(first.seen) == 1

        for b in backends:
            b.handler = busy
        async with client.post(url(lb, "/r/app/hot")) as resp:
            assert resp.status == 503  # the last node's own answer, passed through
            assert resp.headers["Retry-After"] == "15"


async def test_a_call_that_may_have_started_is_never_resent(
    backends: list[Backend], client: aiohttp.ClientSession
) -> None:
    async def crash(request: web.Request) -> web.StreamResponse:
        await request.read()
        assert request.transport is not None
        request.transport.close()  # the function ran, then the connection died
        await asyncio.sleep(1)
        return web.Response()

    async with running_balancer(nodes=",".join(b.address for b in backends)) as lb:
        await all_online(lb, 3)
        order = lb.peer.view.candidates("r/app/once")
        first = next(b for b in backends if b.address == order[0])
        first.handler = crash
        async with client.post(url(lb, "/r/app/once"), data=b"x") as resp:
            assert resp.status == 502
            body = await resp.json()
        assert order[0] in body["msg"]
        assert "not retried" in body["msg"]
        assert sum(len(b.seen) for b in backends) == 1


async def test_an_idempotent_call_whose_connection_dies_goes_to_the_next_node(
    backends: list[Backend], client: aiohttp.ClientSession
) -> None:
    async def hang_up(request: web.Request) -> web.StreamResponse:
        assert request.transport is not None
        request.transport.close()  # as a node that died with our request in its socket
        await asyncio.sleep(1)
        return web.Response()

    async with running_balancer(nodes=",".join(b.address for b in backends)) as lb:
        await all_online(lb, 3)
        order = lb.peer.view.candidates("r/app/get")
        first = next(b for b in backends if b.address == order[0])
        first.handler = hang_up
        async with client.get(url(lb, "/r/app/get")) as resp:
            assert resp.status == 200
            assert (await resp.json())["node"] != first.name
        async with client.post(url(lb, "/r/app/get")) as resp:
            assert resp.status == 502  # a POST may have run: never resent


async def test_no_online_node_is_503_and_every_node_failing_is_502(
    client: aiohttp.ClientSession,
) -> None:
    async with running_balancer() as lb, client.get(url(lb, "/r/a/b")) as resp:
        assert resp.status == 503
        assert "no Fn node" in (await resp.json())["msg"]
    dead = [Backend("d1"), Backend("d2")]
    for b in dead:
        await b.start()
    addrs = [b.address for b in dead]
    async with running_balancer(nodes=",".join(addrs), hc_interval=60.0) as lb:
        await all_online(lb, 2)
        for b in dead:
            await b.stop()
        async with client.get(url(lb, "/r/a/b")) as resp:
            assert resp.status == 502
            msg = (await resp.json())["msg"]
        assert all(a in msg for a in addrs)
        await wait_for(lambda: not lb.peer.view.routable)
        async with client.get(url(lb, "/r/a/b")) as resp:
            assert resp.status == 503


async def test_client_disconnect_cancels_the_upstream_call(
    backends: list[Backend], client: aiohttp.ClientSession
) -> None:
    started = asyncio.Event()

    async def slow(request: web.Request) -> web.StreamResponse:
        started.set()
        await asyncio.sleep(30)
        return web.Response()

    backends[0].handler = slow
    async with running_balancer(nodes=backends[0].address) as lb:
        await all_online(lb, 1)
        call = asyncio.ensure_future(client.get(url(lb, "/r/app/slow")))
        async with asyncio.timeout(5):
            await started.wait()
        call.cancel()
        await wait_for(lambda: backends[0].cancelled == 1, within=30.0)


async def test_large_bodies_stream_both_ways(
    backends: list[Backend], client: aiohttp.ClientSession
) -> None:
    size = 8 * 1024 * 1024

    async def download(request: web.Request) -> web.StreamResponse:
        await request.read()
        resp = web.StreamResponse()
        await resp.prepare(request)
        chunk = b"z" * 65536
        for _ in range(size // len(chunk)):
            await resp.write(chunk)
        await resp.write_eof()
        return resp

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(size // 65536):
            yield b"u" * 65536

    async with running_balancer(nodes=backends[0].address) as lb:
        await all_online(lb, 1)
        async with client.post(url(lb, "/r/app/up"), data=chunks()) as resp:
            assert (await resp.json())["received"] == size
        backends[0].handler = download
        got = 0
        async with client.get(url(lb, "/r/app/down")) as resp:
            async for chunk in resp.content.iter_any():
                got += len(chunk)
        assert got == size


async def test_parsed_node_urls_are_reused_within_a_bound(
    backends: list[Backend], client: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("fnlb.proxy.handler.URL_CACHE_SIZE", 4)
    async with running_balancer(nodes=backends[0].address, data_plane="aiohttp") as lb:
        await all_online(lb, 1)
        for i in range(10):
            async with client.get(url(lb, f"/r/app/fn?n={i % 7}")) as resp:
                assert resp.status == 200
        assert [s.path_qs for s in backends[0].seen] == [f"/r/app/fn?n={i % 7}" for i in range(10)]
        assert lb.proxy is not None
        assert 0 < len(lb.proxy._urls) <= 4
