"""`fnlb serve -log-format=json -access-log -log-level=warn` as a real process: every line on
standard error is one JSON object, and the access log is written below the log level."""

from __future__ import annotations

import asyncio
import json
import signal

import aiohttp

from tests.support import Backend
from tests.support_proc import FnlbProcess


async def test_a_served_call_leaves_one_json_access_line_at_warn_level() -> None:
    backend = Backend("n")
    await backend.start()
    fnlb = await asyncio.to_thread(
        FnlbProcess,
        f"-nodes={backend.address}",
        "-log-format=json",
        "-access-log",
        "-log-level=warn",
    )
    try:
        async with aiohttp.ClientSession() as client:
            for _ in range(200):
                async with client.get(fnlb.mgmt_url("/1/lb/nodes")) as r:
                    if "online" in (await r.json())["nodes"].values():
                        break
                await asyncio.sleep(0.05)
            async with client.post(fnlb.url("/r/app/fn"), data=b"x") as r:
                assert r.status == 200
        fnlb.signal(signal.SIGTERM)
        assert await asyncio.to_thread(fnlb.wait, 30) == 0
        output = fnlb.output()
    finally:
        if fnlb.proc.poll() is None:
            fnlb.proc.kill()
            await asyncio.to_thread(fnlb.wait, 10)
        await backend.stop()
    lines = [json.loads(line) for line in output.splitlines() if line.strip()]
    access = [line for line in lines if line["logger"] == "fnlb.access"]
    assert len(access) == 1
    assert (access[0]["method"], access[0]["status"], access[0]["node"]) == (
        "POST",
        200,
        backend.address,
    )
    others = {line["level"] for line in lines if line["logger"] != "fnlb.access"}
    assert others <= {"warning", "error", "critical"}  # info lines ("fnlb is serving") hidden
