"""What a client sends reaches the node as sent, and back: bodies and long headers.

The node here is a raw socket, not an HTTP library, so nothing decodes the bytes on the way:
a compressed body must arrive compressed, exactly as the original fnlb (Go) forwarded it.
"""

from __future__ import annotations

import asyncio
import gzip
import io
import json
from collections.abc import AsyncIterator

import aiohttp
import pytest

from fnlb.server import Balancer
from tests.support import LoopbackNode, running_balancer, wait_for
from tests.support_proc import free_port


class RawNode(LoopbackNode):
    """An Fn node stand-in that keeps every request's head and body bytes as received."""

    def __init__(self, response_headers: dict[str, str] | None = None) -> None:
        self.requests: list[tuple[bytes, bytes]] = []
        self.response_headers = response_headers or {}

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                body = await reader.readexactly(length)
                if head.startswith(b"GET /version "):
                    payload = json.dumps({"version": "0.3.750"}).encode()
                    extra = ""
                else:
                    self.requests.append((head, body))
                    payload = b"ok"
                    extra = "".join(f"{k}: {v}\r\n" for k, v in self.response_headers.items())
                    if b"\r\nX-Token:" not in head:  # long answers only to a long question
                        extra = ""
                writer.write(
                    f"HTTP/1.1 200 OK\r\nContent-Length: {len(payload)}\r\n{extra}\r\n".encode()
                    + payload
                )
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


@pytest.fixture(params=[False, True], ids=["own port", "shared port"])
async def balanced(request: pytest.FixtureRequest) -> AsyncIterator[tuple[Balancer, RawNode]]:
    node = RawNode(response_headers={"X-Long-Answer": "b" * 20_000})
    await node.start()
    ports = {}
    if request.param:
        port = f"127.0.0.1:{free_port()}"
        ports = {"listen": port, "mgmt_listen": port}
    try:
        async with running_balancer(nodes=node.address, **ports) as lb:
            await wait_for(lambda: lb.peer.view.states.get(node.address) == "online")
            yield lb, node
    finally:
        await node.stop()


async def test_a_compressed_body_reaches_the_node_as_sent(
    balanced: tuple[Balancer, RawNode],
) -> None:
    lb, node = balanced
    compressed = gzip.compress(b"hello " * 1000)
    async with (
        aiohttp.ClientSession(auto_decompress=False) as client,
        client.post(
            f"http://{lb.listen_address}/r/app/fn",
            data=io.BytesIO(compressed),
            headers={"Content-Encoding": "gzip"},
        ) as r,
    ):
        assert r.status == 200, await r.text()
    head, body = node.requests[-1]
    assert body == compressed
    assert b"\r\nContent-Encoding: gzip\r\n" in head


async def test_headers_of_20_kb_pass_both_ways(balanced: tuple[Balancer, RawNode]) -> None:
    """Go's servers (Fn's, the original fnlb's) take headers up to 1 MB in all; aiohttp's
    default of 8 KB per line refused a long token that worked without fnlb."""
    lb, node = balanced
    token = "a" * 20_000
    async with (
        aiohttp.ClientSession(max_field_size=65536) as client,
        client.get(f"http://{lb.listen_address}/r/app/fn", headers={"X-Token": token}) as r,
    ):
        assert r.status == 200, await r.text()
        assert r.headers["X-Long-Answer"] == "b" * 20_000
    head, _ = node.requests[-1]
    assert f"\r\nX-Token: {token}\r\n".encode() in head
