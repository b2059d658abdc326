"""`Expect: 100-continue` on the traffic port: the client is told to send its body, once.

The traffic port has no aiohttp router in front of the proxy (it costs time per call), so the
proxy answers `Expect` itself; when traffic and management share a port, the router must not
answer it a second time.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from fnlb.server import Balancer
from tests.support import Backend, running_balancer, wait_for

BODY = b'{"name":"expect"}'


@pytest.fixture
async def backend() -> AsyncIterator[Backend]:
    node = Backend("n")
    await node.start()
    yield node
    await node.stop()


async def _head(reader: asyncio.StreamReader) -> bytes:
    async with asyncio.timeout(5):
        return await reader.readuntil(b"\r\n\r\n")


async def _call_with_expect(lb: Balancer, expect: str, version: str = "1.1") -> list[bytes]:
    """Send headers with `Expect`, then the body once told to: every head read, in order."""
    address = lb.listen_address
    assert address is not None
    reader, writer = await asyncio.open_connection(address.host, address.port)
    try:
        writer.write(
            f"POST /r/app/fn HTTP/{version}\r\nHost: {address}\r\nExpect: {expect}\r\n"
            f"Content-Length: {len(BODY)}\r\nConnection: close\r\n\r\n".encode()
        )
        await writer.drain()
        heads = [await _head(reader)]
        if heads[0].startswith(b"HTTP/1.1 100 "):
            writer.write(BODY)
            await writer.drain()
            heads.append(await _head(reader))
        return heads
    finally:
        writer.close()


@pytest.mark.parametrize("shared_port", [False, True], ids=["own port", "shared port"])
async def test_expect_100_continue_is_answered_once_and_the_body_reaches_the_node(
    backend: Backend, shared_port: bool, unused_tcp_port: int
) -> None:
    ports = {"listen": f"127.0.0.1:{unused_tcp_port}"} if shared_port else {}
    if shared_port:
        ports["mgmt_listen"] = ports["listen"]
    async with running_balancer(nodes=backend.address, **ports) as lb:
        await wait_for(lambda: lb.peer.view.states.get(backend.address) == "online")
        heads = await _call_with_expect(lb, "100-continue")
    assert heads[0] == b"HTTP/1.1 100 Continue\r\n\r\n"
    assert heads[1].startswith(b"HTTP/1.1 200 ")
    assert len(heads) == 2
    assert backend.seen[0].body_len == len(BODY)
    assert "Expect" not in backend.seen[0].headers  # hop-by-hop: never forwarded


async def test_an_unknown_expectation_gets_417_and_reaches_no_node(backend: Backend) -> None:
    async with running_balancer(nodes=backend.address) as lb:
        await wait_for(lambda: lb.peer.view.states.get(backend.address) == "online")
        heads = await _call_with_expect(lb, "something-else")
    assert heads[0].startswith(b"HTTP/1.1 417 ")
    assert backend.seen == []
