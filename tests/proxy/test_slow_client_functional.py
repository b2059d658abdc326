"""A client that stops reading holds the node back (no queue grows in fnlb); one that hangs
up mid-answer cancels the call on the node."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from fnlb.server import Balancer
from tests.support import Backend, running_balancer, wait_for

SIZE = 64 * 1024 * 1024
BLOCK = 256 * 1024


class Download:
    """Streams SIZE bytes; counts the answers cut short by the connection going away (as a
    cancel or as a write error: which comes first is up to the node's scheduling)."""

    def __init__(self) -> None:
        self.cut_short = 0

    async def __call__(self, request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Length": str(SIZE)})
        await resp.prepare(request)
        block = b"d" * BLOCK
        try:
            for _ in range(SIZE // BLOCK):
                await resp.write(block)
        except (asyncio.CancelledError, ConnectionError):
            self.cut_short += 1
            raise
        await resp.write_eof()
        return resp


@pytest.fixture
async def balanced() -> AsyncIterator[tuple[Balancer, Download]]:
    download = Download()
    node = Backend("big", download)
    await node.start()
    try:
        async with running_balancer(nodes=node.address) as lb:
            await wait_for(lambda: lb.peer.view.states.get(node.address) == "online")
            yield lb, download
    finally:
        await node.stop()


async def _get(lb: Balancer) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, int]:
    address = lb.listen_address
    assert address is not None
    reader, writer = await asyncio.open_connection(address.host, address.port)
    writer.write(b"GET /r/app/big HTTP/1.1\r\nHost: x\r\n\r\n")
    async with asyncio.timeout(5):
        head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ")
    return reader, writer, 0


async def test_a_client_that_stops_reading_pauses_the_node_side_then_gets_every_byte(
    balanced: tuple[Balancer, Download], data_plane: str
) -> None:
    if data_plane == "aiohttp":
        pytest.skip("looks inside the fast plane's connections")
    lb, _ = balanced
    reader, writer, _ = await _get(lb)
    try:
        assert lb.fast is not None
        (conn,) = lb.fast.connections
        # The StreamReader stops reading past its limit, the kernel buffers fill, and fnlb
        # must then stop reading the node rather than queue the rest (64 MB) in memory.
        await wait_for(
            lambda: (
                conn.write_paused
                and conn.active is not None
                and conn.active.up is not None
                and conn.active.up.transport is not None
                and not conn.active.up.transport.is_reading()
            ),
            within=10.0,
        )
        got = 0
        async with asyncio.timeout(30):
            while got < SIZE:
                chunk = await reader.read(1 << 20)
                assert chunk, "connection closed early"
                got += len(chunk)
        assert got == SIZE
    finally:
        writer.close()


async def test_a_client_that_hangs_up_mid_answer_cancels_the_call_on_the_node(
    balanced: tuple[Balancer, Download],
) -> None:
    lb, download = balanced
    reader, writer, _ = await _get(lb)
    async with asyncio.timeout(5):
        await reader.readexactly(BLOCK)
    writer.close()
    await wait_for(lambda: download.cut_short == 1, within=10.0)
