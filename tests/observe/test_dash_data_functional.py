"""`/1/lb/dash` and its data without a browser: the page loads nothing from elsewhere, and the
data holds per-node counts and latency after calls (a lone fnlb: no peers, agreement null)."""

from __future__ import annotations

import re

import aiohttp

from tests.support import Backend, running_balancer, wait_for


async def test_page_is_self_contained_and_data_counts_calls() -> None:
    backend = Backend("n")
    await backend.start()
    try:
        async with (
            running_balancer(nodes=backend.address) as lb,
            aiohttp.ClientSession() as client,
        ):
            await wait_for(lambda: lb.peer.view.states.get(backend.address) == "online")
            for i in range(5):
                async with client.post(f"http://{lb.listen_address}/r/app/f{i % 2}") as r:
                    assert r.status == 200
            async with client.get(f"http://{lb.mgmt_address}/1/lb/dash") as r:
                assert r.status == 200
                assert r.content_type == "text/html"
                csp = r.headers["Content-Security-Policy"]
                page = await r.text()
            async with client.get(f"http://{lb.mgmt_address}/1/lb/dash/data") as r:
                data = await r.json()
    finally:
        await backend.stop()
    assert "default-src 'none'" in csp
    assert "connect-src 'self'" in csp
    # no script, style, image or link from anywhere: only the SVG namespace names a URL
    assert re.findall(r"https?://[^\"' ]+", page) == ["http://www.w3.org/2000/svg"]
    assert not re.search(r"<(script|link|img)[^>]+(src|href)=\"(?!data:)", page)
    assert len(page) < 16_000  # small
    node = data["nodes"][backend.address]
    assert node["state"] == "online"
    assert node["calls"] == 5
    assert sum(node["latency"]["counts"]) == 5
    assert data["agree"] is None  # not in cluster mode
    assert data["peers"] == []
    assert {h["function"] for h in data["hot"]} <= {"r/app/f0", "r/app/f1"}
    assert data["scale"] is None or "desired_nodes" in data["scale"]
