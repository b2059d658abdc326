"""SIGTERM: stop accepting, let in-flight calls finish within -shutdown-timeout, exit 0."""

from __future__ import annotations

import asyncio
import signal

import aiohttp
import pytest
from aiohttp import web

from tests.support import Backend, wait_for
from tests.support_proc import FnlbProcess


async def slow(request: web.Request) -> web.StreamResponse:
    await asyncio.sleep(float(request.query.get("s", "1")))
    return web.json_response({"done": True})


async def wait_online(client: aiohttp.ClientSession, fnlb: FnlbProcess) -> None:
    for _ in range(200):
        async with client.get(fnlb.mgmt_url("/1/lb/nodes")) as r:
            if "online" in (await r.json())["nodes"].values():
                return
        await asyncio.sleep(0.05)
    raise AssertionError("node never online")


@pytest.mark.parametrize(
    ("sig", "workers"),
    [(signal.SIGTERM, 1), (signal.SIGTERM, 2), (signal.SIGINT, 2)],
)
async def test_in_flight_call_finishes_then_exit_0(sig: signal.Signals, workers: int) -> None:
    """One process, or a primary and its workers: a call under way is answered, a new
    connection is refused, and the process exits 0."""
    backend = Backend("n", slow)
    await backend.start()
    fnlb = FnlbProcess(
        f"-nodes={backend.address}", "-shutdown-timeout=10", "-hc-interval=0.2",
        f"-workers={workers}",
    )  # fmt: skip
    try:
        async with aiohttp.ClientSession() as client:
            await wait_online(client, fnlb)
            call = asyncio.ensure_future(client.get(fnlb.url("/r/app/slow?s=1")))
            await wait_for(lambda: bool(backend.seen))
            fnlb.signal(sig)
            await asyncio.sleep(0.3)
            with pytest.raises(ConnectionRefusedError):  # refused, not queued until exit
                await asyncio.open_connection("127.0.0.1", fnlb.port)
            resp = await call
            assert resp.status == 200
            assert (await resp.json())["done"] is True
            resp.release()
        assert await asyncio.to_thread(fnlb.wait, 15) == 0
    finally:
        fnlb.stop()
        await backend.stop()


async def test_shutdown_timeout_cuts_long_calls() -> None:
    backend = Backend("n", slow)
    await backend.start()
    fnlb = FnlbProcess(f"-nodes={backend.address}", "-shutdown-timeout=0.5", "-hc-interval=0.2")
    try:
        async with aiohttp.ClientSession() as client:
            await wait_online(client, fnlb)
            call = asyncio.ensure_future(client.get(fnlb.url("/r/app/slow?s=30")))
            await wait_for(lambda: bool(backend.seen))
            fnlb.signal(signal.SIGTERM)
            assert await asyncio.to_thread(fnlb.wait, 10) == 0
            with pytest.raises(aiohttp.ClientError):
                await call
    finally:
        fnlb.stop()
        await backend.stop()
