"""The management API: the original's shapes byte for byte, and clear 400s for bad input."""

from __future__ import annotations

import io
import json
from collections.abc import AsyncIterator

import aiohttp
import pytest

from fnlb.server import Balancer
from tests.support import Backend, running_balancer, wait_for


@pytest.fixture
async def client() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def mgmt(lb: Balancer, path: str = "/1/lb/nodes") -> str:
    return f"http://{lb.mgmt_address}{path}"


async def test_add_list_delete_byte_compatible(client: aiohttp.ClientSession) -> None:
    backend = Backend("n")
    await backend.start()
    try:
        async with running_balancer() as lb:
            async with client.put(mgmt(lb), data=f'{{"node":"{backend.address}"}}') as r:
                assert r.status == 200
                assert await r.read() == b'{"msg":"node added"}\n'
            await wait_for(lambda: lb.peer.view.states.get(backend.address) == "online")
            async with client.put(mgmt(lb), json={"node": "127.0.0.1:1"}) as r:
                assert r.status == 200
            await wait_for(lambda: lb.peer.view.states.get("127.0.0.1:1") == "offline")
            async with client.get(mgmt(lb)) as r:
                assert r.status == 200
                assert await r.read() == (
                    b'{"nodes":{"127.0.0.1:1":"offline","%s":"online"}}\n'
                    % backend.address.encode()
                )
            async with client.delete(mgmt(lb), json={"node": "127.0.0.1:1"}) as r:
                assert await r.read() == b'{"msg":"node deleted"}\n'
            async with client.get(mgmt(lb)) as r:
                assert list((await r.json())["nodes"]) == [backend.address]
    finally:
        await backend.stop()


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        (b"{not json", "invalid JSON"),
        (b"", "invalid JSON"),
        (b"[1]", "JSON object"),
        (b"{}", 'missing "node"'),
        (b'{"node": 5}', "must be a string"),
        (b'{"node": "nohost"}', "not host:port"),
        (b'{"node": "a:0"}', "1-65535"),
        (b'{"node": "a:70000"}', "1-65535"),
        (b'{"node": "bad host:80"}', "not a valid hostname"),
    ],
)
async def test_bad_input_is_400_with_a_message(
    client: aiohttp.ClientSession, body: bytes, needle: str
) -> None:
    async with running_balancer() as lb:
        for method in ("PUT", "DELETE"):
            async with client.request(method, mgmt(lb), data=body) as r:
                assert r.status == 400
                assert needle in (await r.json())["msg"]
        assert lb.peer.nodes() == []


async def test_separate_ports_serve_only_their_own_job(client: aiohttp.ClientSession) -> None:
    backend = Backend("n")
    await backend.start()
    try:
        async with running_balancer(nodes=backend.address) as lb:
            await wait_for(lambda: lb.peer.view.states.get(backend.address) == "online")
            async with client.get(mgmt(lb, "/r/app/fn")) as r:
                assert r.status == 404
                assert await r.read() == b'{"msg":"unknown command"}\n'
            # On the traffic port the API path is just another call, as in the original.
            async with client.get(f"http://{lb.listen_address}/1/lb/nodes") as r:
                assert r.status == 200
                assert (await r.json())["node"] == "n"
            assert backend.seen[-1].path_qs == "/1/lb/nodes"
    finally:
        await backend.stop()


async def test_shared_port(client: aiohttp.ClientSession) -> None:
    from tests.support_proc import free_port

    port = free_port()
    backend = Backend("n")
    await backend.start()
    try:
        async with running_balancer(
            nodes=backend.address, listen=f"127.0.0.1:{port}", mgmt_listen=f"127.0.0.1:{port}"
        ) as lb:
            assert lb.listen_address == lb.mgmt_address
            await wait_for(lambda: lb.peer.view.states.get(backend.address) == "online")
            async with client.get(f"http://127.0.0.1:{port}/1/lb/nodes") as r:
                assert (await r.json())["nodes"] == {backend.address: "online"}
            async with client.get(f"http://127.0.0.1:{port}/r/app/fn") as r:
                assert (await r.json())["node"] == "n"
            # The API's body limit is the API's: calls on the shared port carry any body,
            # read whole up to the proxy's buffer limit and streamed beyond it.
            for size in (200 * 1024, 3 * 1024 * 1024):
                body = io.BytesIO(b"x" * size)
                async with client.post(f"http://127.0.0.1:{port}/r/app/fn", data=body) as r:
                    assert r.status == 200, await r.text()
                    assert (await r.json())["received"] == size
            big = {"node": "x" * 100_000}
            async with client.put(f"http://127.0.0.1:{port}/1/lb/nodes", json=big) as r:
                assert r.status == 413
                assert "msg" in await r.json()
    finally:
        await backend.stop()


async def test_stats_roll_up_per_second_and_reading_does_not_drain(
    client: aiohttp.ClientSession,
) -> None:
    backend = Backend("n")
    await backend.start()
    try:
        async with running_balancer(nodes=backend.address) as lb:
            await wait_for(lambda: lb.peer.view.states.get(backend.address) == "online")
            for _ in range(5):
                async with client.get(f"http://{lb.listen_address}/r/app/fn") as r:
                    await r.read()
            reads = []
            for _ in range(2):
                async with client.get(mgmt(lb, "/1/lb/stats")) as r:
                    reads.append((await r.json())["stats"])
            assert reads[0] == reads[1]
            stats = reads[0]
            assert sum(s["tp"] for s in stats) == 5
            for s in stats:
                assert set(s) == {"timestamp", "tp", "node", "func", "wait"}
                assert s["node"] == backend.address
                assert s["func"] == "r/app/fn"
                assert s["wait"] == pytest.approx(0.0015)
                assert s["timestamp"].endswith("Z")
    finally:
        await backend.stop()


async def test_a_node_change_body_over_64_kib_is_refused_with_413(
    client: aiohttp.ClientSession,
) -> None:
    async def chunked() -> AsyncIterator[bytes]:  # no Content-Length: the cap while reading
        yield b'{"node": "'
        for _ in range(20):
            yield b"x" * 4096

    async with running_balancer() as lb:
        url = f"http://{lb.mgmt_address}/1/lb/nodes"
        for body in (io.BytesIO(json.dumps({"node": "x" * 70_000}).encode()), chunked()):
            async with client.put(url, data=body) as r:
                assert r.status == 413
                assert (await r.json()) == {"msg": "body is larger than 65536 bytes"}
        assert lb.peer.nodes() == []
