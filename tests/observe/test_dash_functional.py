"""`/1/lb/dash` in headless Chromium: loads with no console error and no request outside
fnlb, and its charts hold data once calls went through (a cluster of two peers, so peers and
verdicts show too). `FNLB_DASH_SCREENSHOT=docs/dashboard.png` keeps the screenshot."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import aiohttp
import pytest

from testkit.peers import peers
from tests.observe.cdp import CHROMIUM, Page, chromium
from tests.support import Backend, wait_for

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (bootstrap)")


async def test_dashboard_draws_calls_latency_peers_and_scale(tmp_path: Path) -> None:
    keep = os.environ.get("FNLB_DASH_SCREENSHOT")
    nodes = [Backend(f"n{i}") for i in range(3)]
    for n in nodes:
        await n.start()
    try:
        async with peers(2, nodes=",".join(n.address for n in nodes)) as group:
            lb = group[0]
            await wait_for(
                lambda: all(s == "online" for s in lb.peer.view.states.values()), within=15
            )
            mgmt = f"http://{lb.mgmt_address}"
            async with (
                chromium(tmp_path / "profile", height=1150) as page,
                aiohttp.ClientSession() as client,
            ):
                await page.send("Page.navigate", url=f"{mgmt}/1/lb/dash?interval=200")
                stop = asyncio.Event()

                async def traffic() -> None:
                    for i in range(3000):  # bounded in count, and stopped when seen
                        if stop.is_set():
                            return
                        url = f"http://{lb.listen_address}/r/app/fn{i % 7}"
                        async with client.post(url, data=b"x") as r:
                            await r.read()
                        await asyncio.sleep(0.002 * (i % 5))  # uneven, for the picture

                load = asyncio.get_running_loop().create_task(traffic())
                try:
                    await _until(page, "window.fnlbDash && window.fnlbDash.polls >= 3")
                    await _until(
                        page,
                        "Object.values(fnlbDash.series.rate).some(s => s.some(p => p[1] > 0))"
                        " && Object.values(fnlbDash.series.p99).some(s => s.some(p => p[1] > 0))"
                        " && document.querySelectorAll('#hot tr').length > 1",
                    )
                    if keep:  # a few more seconds of lines for the picture in the docs
                        await _until(page, "fnlbDash.polls >= 40")
                finally:
                    stop.set()
                    await load
                await _until(page, "Object.keys(fnlbDash.series.scale).length === 2")
                await _until(page, "document.querySelectorAll('#peers tr').length === 3")
                # the peers' verdicts settle within a few gossip rounds
                await _until(
                    page, "document.getElementById('agree').textContent === 'all peers agree'"
                )
                await _until(
                    page, f"document.querySelectorAll('#verdicts tr').length === {1 + len(nodes)}"
                )
                charts = await page.evaluate(
                    "['rate', 'p99', 'scale'].map(c => document.querySelectorAll("
                    "'#' + c + ' polyline').length)"
                )
                agree = await page.evaluate("document.getElementById('agree').textContent")
                verdict_rows = await page.evaluate(
                    "document.querySelectorAll('#verdicts tr').length"
                )
                shot = await page.screenshot()
                errors, requests = list(page.errors), list(page.requests)
    finally:
        for n in nodes:
            await n.stop()
    assert errors == []
    assert requests, "the page made no request at all"
    outside = [u for u in requests if not u.startswith(mgmt + "/") and not u.startswith("data:")]
    assert outside == []
    assert charts[0] >= 1  # a line per node that took calls
    assert charts[1] >= 1
    assert charts[2] == 2  # desired and current Fn nodes
    assert agree == "all peers agree"
    assert verdict_rows == 1 + len(nodes)
    assert shot[:8] == b"\x89PNG\r\n\x1a\n"
    if keep:
        save(Path(keep), shot)


def save(path: Path, data: bytes) -> None:
    path.write_bytes(data)


async def _until(page: Page, expression: str, within: float = 30.0) -> None:
    """Wait (in the page, polling every 0.1 s) until `expression` is true."""
    async with asyncio.timeout(within):
        await page.wait_for(expression)
