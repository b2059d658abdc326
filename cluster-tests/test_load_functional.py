"""The load client on loopback: its two bounds, and what it records per call (no root)."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web
from harness.load import NODE_HEADER, Call, LoadConfig, LoadResult, main, run_load


async def _fn(request: web.Request) -> web.Response:
    if request.match_info["name"] == "broken":
        return web.Response(status=502, text="node failed")
    await asyncio.sleep(int(request.query.get("ms", "0")) / 1000)
    return web.Response(text="ok", headers={NODE_HEADER: "10.213.0.9:8080"})


@pytest.fixture
async def fn_server() -> AsyncIterator[str]:
    app = web.Application()
    app.router.add_get("/r/app/{name}", _fn)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


async def test_it_makes_exactly_count_calls_and_records_who_answered(fn_server: str) -> None:
    cfg = LoadConfig(fn_server, ("/r/app/a", "/r/app/b"), count=25, deadline=30, concurrency=4)
    result = await run_load(cfg)
    assert [c.i for c in result.calls] == list(range(25))
    assert all(c.ok for c in result.calls)
    assert result.by_node() == {"10.213.0.9:8080": 25}
    assert {c.path for c in result.calls} == {"/r/app/a", "/r/app/b"}
    assert all(result.began <= c.start <= c.end <= result.ended for c in result.calls)


async def test_post_calls_send_a_body_as_an_fn_invocation_does() -> None:
    seen: list[tuple[str, bytes]] = []

    async def record(request: web.Request) -> web.Response:
        seen.append((request.method, await request.read()))
        return web.Response(text="ok", headers={NODE_HEADER: "10.213.0.9:8080"})

    app = web.Application()
    app.router.add_route("*", "/r/app/{name}", record)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        target = f"127.0.0.1:{runner.addresses[0][1]}"
        cfg = LoadConfig(target, ("/r/app/a",), count=3, deadline=30, method="POST")
        result = await run_load(cfg)
    finally:
        await runner.cleanup()
    assert all(c.ok for c in result.calls)
    assert len(seen) == 3
    assert all(method == "POST" and body for method, body in seen)


async def test_no_call_starts_after_the_deadline(fn_server: str) -> None:
    cfg = LoadConfig(fn_server, ("/r/app/a?ms=50",), count=10_000, deadline=0.5, concurrency=2)
    result = await run_load(cfg)
    assert 0 < len(result.calls) < 10_000
    assert all(c.start < result.began + 0.5 for c in result.calls)


async def test_failures_are_recorded_not_raised(fn_server: str) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = f"127.0.0.1:{s.getsockname()[1]}"  # bound, never listening: refused
    refused = await run_load(LoadConfig(closed, ("/r/app/a",), count=3, deadline=5))
    assert len(refused.errors()) == 3
    assert all(c.status is None and c.error for c in refused.calls)
    broken = await run_load(LoadConfig(fn_server, ("/r/app/broken",), count=3, deadline=5))
    assert [c.status for c in broken.errors()] == [502, 502, 502]
    assert broken.error_kinds() == {"HTTP 502": 3}


async def test_a_call_slower_than_its_timeout_is_an_error(fn_server: str) -> None:
    cfg = LoadConfig(fn_server, ("/r/app/a?ms=2000",), count=1, deadline=5, timeout=0.2)
    (call,) = (await run_load(cfg)).calls
    assert not call.ok
    assert call.error is not None
    assert call.error.startswith("TimeoutError")


def test_results_survive_the_json_file_and_summarise_in_one_line() -> None:
    calls = [
        Call(0, "/r/app/a", 1.0, 1.1, 200, "n1:8080", None),
        Call(1, "/r/app/a", 1.0, 1.3, 200, "n2:8080", None),
        Call(2, "/r/app/a", 2.0, 2.5, None, None, "ClientOSError: reset"),
    ]
    result = LoadResult(calls, 1.0, 2.5)
    again = LoadResult.from_json(json.loads(json.dumps(result.to_json())))
    assert again.calls == calls
    line = again.summary_line("demo", convergence=1.25)
    assert line.startswith("SCENARIO demo: calls=3 errors=1 ")
    assert "nodes=n1:8080:1,n2:8080:1" in line
    assert line.endswith("convergence=1.25s")
    assert "\n" not in line
    assert again.in_flight_at(1.05) == calls[:2]
    assert again.started_after(2.0) == calls[2:]


def test_the_command_writes_its_results_file(tmp_path: Path) -> None:
    out = tmp_path / "out.json"
    argv = ["--target", "127.0.0.1:1", "--path", "/r/app/a", "--count", "2"]
    assert main([*argv, "--deadline", "5", "--timeout", "1", "--out", str(out)]) == 0
    result = LoadResult.from_json(json.loads(out.read_text()))
    assert len(result.calls) == 2
    assert result.config["target"] == "127.0.0.1:1"
