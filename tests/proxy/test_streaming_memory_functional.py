"""200 MB up and 200 MB down through a real fnlb process must not grow it by more than ~50 MB."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web

from tests.support import Backend
from tests.support_proc import FnlbProcess

SIZE = 200 * 1024 * 1024
CHUNK = 256 * 1024
LIMIT_KB = 50 * 1024


@pytest.mark.slow
async def test_200mb_each_way_keeps_rss_flat(data_plane: str) -> None:
    async def download(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Length": str(SIZE)})
        await resp.prepare(request)
        block = b"d" * CHUNK
        for _ in range(SIZE // CHUNK):
            await resp.write(block)
        await resp.write_eof()
        return resp

    backend = Backend("big")
    await backend.start()
    fnlb = FnlbProcess(f"-nodes={backend.address}", "-hc-interval=0.2", f"-data-plane={data_plane}")
    try:
        async with aiohttp.ClientSession() as client:

            async def online() -> bool:
                async with client.get(fnlb.mgmt_url("/1/lb/nodes")) as r:
                    return bool((await r.json())["nodes"][backend.address] == "online")

            for _ in range(200):
                if await online():
                    break
                await asyncio.sleep(0.05)
            assert await online()
            baseline = fnlb.status_kb("VmRSS")

            async def upload() -> AsyncIterator[bytes]:
                block = b"u" * CHUNK
                for _ in range(SIZE // CHUNK):
                    yield block

            async with client.post(
                fnlb.url("/r/app/up"), data=upload(), headers={"Content-Length": str(SIZE)}
            ) as resp:
                assert (await resp.json())["received"] == SIZE
            backend.handler = download
            got = 0
            async with client.get(fnlb.url("/r/app/down")) as resp:
                async for chunk in resp.content.iter_any():
                    got += len(chunk)
            assert got == SIZE
            peak = fnlb.status_kb("VmHWM")
        print(f"fnlb RSS baseline {baseline} kB, peak {peak} kB, growth {peak - baseline} kB")
        assert peak - baseline < LIMIT_KB
    finally:
        fnlb.stop()
        await backend.stop()
