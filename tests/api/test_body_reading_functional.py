"""Management API bodies read by aiohttp: split over segments, chunked, deep, oversized."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import aiohttp

from fnlb.api.jsonio import MAX_BODY
from fnlb.server import Balancer
from tests.support import running_balancer


async def raw_request(lb: Balancer, parts: list[bytes]) -> tuple[int, dict[str, object]]:
    """Send `parts` as separate TCP writes (drained, paused between); the status and body."""
    assert lb.mgmt_address is not None
    reader, writer = await asyncio.open_connection("127.0.0.1", lb.mgmt_address.port)
    try:
        for part in parts:
            writer.write(part)
            await writer.drain()
            await asyncio.sleep(0.05)  # lets the server read what came so far on its own
        head = await reader.readuntil(b"\r\n\r\n")
        status = int(head.split()[1])
        length = next(
            int(line.split(b":")[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length")
        )
        body = json.loads(await reader.readexactly(length))
    finally:
        writer.close()
    return status, body


def put_head(length: int | None) -> bytes:
    size = f"Content-Length: {length}" if length is not None else "Transfer-Encoding: chunked"
    return f"PUT /1/lb/nodes HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{size}\r\n\r\n".encode()


async def test_a_body_split_across_segments_is_read_whole() -> None:
    body = b'{"node": "127.0.0.1:1"}'
    async with running_balancer() as lb:
        status, answer = await raw_request(lb, [put_head(len(body)) + body[:9], body[9:]])
        assert (status, answer) == (200, {"msg": "node added"})


async def test_a_chunked_body_in_several_chunks_is_read_whole() -> None:
    body = b'{"node": "127.0.0.1:2"}'
    chunks = [body[:5], body[5:]]
    wire = [b"%x\r\n%s\r\n" % (len(c), c) for c in chunks] + [b"0\r\n\r\n"]
    async with running_balancer() as lb:
        assert await raw_request(lb, [put_head(None), *wire]) == (200, {"msg": "node added"})


async def test_an_oversize_chunked_body_is_413() -> None:
    chunk = b"x" * 16384
    wire = [b"%x\r\n%s\r\n" % (len(chunk), chunk)] * (MAX_BODY // len(chunk) + 1)
    async with running_balancer() as lb:
        first = b"1\r\n[\r\n"  # a first segment that alone is no JSON: the limit must see all
        parts = [put_head(None), first, b"".join(wire), b"0\r\n\r\n"]
        status, answer = await raw_request(lb, parts)
    assert status == 413
    assert "larger than" in str(answer["msg"])


async def client_put(lb: Balancer, data: bytes | AsyncIterator[bytes]) -> tuple[int, object]:
    async with (
        aiohttp.ClientSession() as s,
        s.put(f"http://{lb.mgmt_address}/1/lb/nodes", data=data) as r,
    ):
        return r.status, await r.json()


async def test_json_nested_20000_deep_is_a_400_not_a_crash() -> None:
    async with running_balancer() as lb:
        for deep in (b"[" * 20000 + b"]" * 20000, b'{"a":' * 10000 + b"1" + b"}" * 10000):
            status, answer = await client_put(lb, deep)
            assert status == 400
            assert answer == {"msg": "invalid JSON: nested too deeply"}
        status, _ = await client_put(lb, b'{"node": "127.0.0.1:3"}')
        assert status == 200  # the handler is fine afterwards
