"""Emulated Fn servers on loopback: routes, headers, 503 busy, metrics, stop and start."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import aiohttp
import pytest

from fnlb.fnsim import FnSimCluster, FnSimOptions, start_nodes
from fnlb.goduration import parse_go_duration

QUICK = FnSimOptions(cold_start_ms=30.0, default_ms=1.0, shutdown_timeout_s=2.0, seed=1)


@pytest.fixture
async def cluster() -> AsyncIterator[FnSimCluster]:
    async with await start_nodes(2, options=QUICK) as c:
        yield c


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def until(condition: Callable[[], bool], limit_s: float = 10.0) -> None:
    """Poll `condition` (bounded) while the server works; fail after `limit_s` seconds."""
    for _ in range(int(limit_s / 0.005)):
        if condition():
            return
        await asyncio.sleep(0.005)
    raise AssertionError("condition never held")


def metrics_of(text: str) -> dict[str, float]:
    values: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            values[name] = float(value)
    return values


async def test_answers_like_an_fn_server(
    cluster: FnSimCluster, http: aiohttp.ClientSession
) -> None:
    base = f"http://{cluster.addresses[0]}"
    async with http.get(base + "/") as r:
        assert r.status == 200
        assert await r.json() == {"hello": "world!", "goto": "https://github.com/fnproject/fn"}
    async with http.get(base + "/version") as r:
        assert await r.json() == {"version": "0.3.579"}
    assert len(set(cluster.addresses)) == 2


async def test_version_is_a_knob(http: aiohttp.ClientSession) -> None:
    async with await start_nodes(options=FnSimOptions(version="0.3.753")) as c:
        r = await http.get(f"http://{c.addresses[0]}/version")
        assert await r.json() == {"version": "0.3.753"}


async def test_first_call_is_cold_the_next_hot_with_fn_headers(
    cluster: FnSimCluster, http: aiohttp.ClientSession
) -> None:
    address = cluster.addresses[0]
    url = f"http://{address}/r/myapp/hello?ms=2"
    async with http.post(url, data=b"x" * 100_000) as r:
        assert r.status == 200
        body = await r.json()
        first_id = r.headers["Fn-Call-Id"]
        assert r.headers["Fnsim-Cold"] == "true"
        assert r.headers["Fnsim-Node"] == address
        # The wait is the cold start in the model's clock: exactly 30 ms.
        assert r.headers["Xxx-Fxlb-Wait"] == "30ms"
    assert body == {"fn": "r/myapp/hello", "node": address, "cold": True, "call_id": first_id}
    assert len(first_id) == 26
    async with http.get(url) as r:
        assert r.headers["Fnsim-Cold"] == "false"
        assert r.headers["Xxx-Fxlb-Wait"] == "0s"
        assert r.headers["Fn-Call-Id"] != first_id
        assert (await r.json())["cold"] is False


async def test_invocation_routes_name_the_function(
    cluster: FnSimCluster, http: aiohttp.ClientSession
) -> None:
    base = f"http://{cluster.addresses[0]}"
    cases = [
        ("POST", "/invoke/01ABCDEF", "01ABCDEF"),
        ("PUT", "/r/app", "r/app"),
        ("GET", "/r/app/a/b/c?x=1", "r/app/a/b/c"),
        ("GET", "/t/app", "t/app"),
        ("DELETE", "/t/app/hook/x", "t/app/hook/x"),
    ]
    for method, path, fn in cases:
        async with http.request(method, base + path) as r:
            assert r.status == 200, path
            assert (await r.json())["fn"] == fn
    stats = cluster.nodes[0].stats()
    assert stats.cold_starts == len(cases)


async def test_invoke_accepts_only_post(cluster: FnSimCluster, http: aiohttp.ClientSession) -> None:
    async with http.get(f"http://{cluster.addresses[0]}/invoke/abc") as r:
        assert r.status == 405
        assert r.headers["Allow"] == "POST"
    assert cluster.nodes[0].stats().calls == 0


async def test_status_and_bad_query_values(
    cluster: FnSimCluster, http: aiohttp.ClientSession
) -> None:
    base = f"http://{cluster.addresses[0]}/r/app/f"
    async with http.get(base + "?status=418&other=ignored") as r:
        assert r.status == 418
        assert r.headers["Fnsim-Cold"] == "true"
    async with http.get(base + "?ms=abc") as r:
        assert r.status == 400
        assert "ms" in (await r.json())["error"]["message"]
    async with http.get(base + "?status=42") as r:
        assert r.status == 400


async def test_busy_node_answers_503_after_the_wait_limit(http: aiohttp.ClientSession) -> None:
    options = FnSimOptions(memory_mb=128, cold_start_ms=1.0, max_wait_s=0.2)
    async with await start_nodes(options=options) as c:
        base = f"http://{c.addresses[0]}"
        long_call = asyncio.create_task(http.get(base + "/r/app/f?ms=500"))
        await until(lambda: c.nodes[0].stats().running > 0)
        async with http.get(base + "/r/app/g") as r:
            assert r.status == 503
            assert await r.json() == {"error": {"message": "Timed out - server too busy"}}
            assert r.headers["Retry-After"] == "15"
            assert r.headers["Xxx-Fxlb-Wait"] == "200ms"
            assert r.headers["Fn-Call-Id"]
        async with await long_call as r:
            assert r.status == 200
        async with http.get(base + "/metrics") as r:
            assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4")
            m = metrics_of(await r.text())
        assert m["fn_server_busy"] == 1
        assert m["fn_calls"] == 2
        assert m["fn_completed"] == 1


async def test_metrics_move_with_calls(cluster: FnSimCluster, http: aiohttp.ClientSession) -> None:
    base = f"http://{cluster.addresses[1]}"
    async with http.get(base + "/metrics") as r:
        before = metrics_of(await r.text())
    assert before["fn_calls"] == 0
    assert before["fn_util_mem_avail"] == 1024 * 1024 * 1024
    calls = [http.get(base + f"/r/app/f{i}?ms=300") for i in range(3)]
    tasks = [asyncio.ensure_future(call) for call in calls]
    await until(lambda: cluster.nodes[1].stats().running == 3)
    async with http.get(base + "/metrics") as r:
        during = metrics_of(await r.text())
    assert during["fn_running"] == 3
    assert during["fn_util_mem_used"] == 3 * 128 * 1024 * 1024
    assert during['fnsim_containers{state="busy"}'] == 3
    for task in tasks:
        (await task).release()
    async with http.get(base + "/metrics") as r:
        after = metrics_of(await r.text())
    assert after["fn_calls"] == 3
    assert after["fn_completed"] == 3
    assert after["fn_running"] == 0
    assert after["fn_queued"] == 0
    assert after["fnsim_cold_starts_total"] == 3
    assert after['fnsim_containers{state="idle"}'] == 3


async def test_sub_millisecond_waits_are_sent_in_utf8_like_go(
    http: aiohttp.ClientSession,
) -> None:
    async with await start_nodes(options=FnSimOptions(cold_start_ms=0.35)) as c:
        r = await http.get(f"http://{c.addresses[0]}/r/app/f?ms=0")
        assert r.headers["Xxx-Fxlb-Wait"] == "350µs"
        assert (b"Xxx-Fxlb-Wait", "350µs".encode()) in r.raw_headers
        r.release()


async def test_wait_header_can_be_switched_off(http: aiohttp.ClientSession) -> None:
    async with await start_nodes(options=FnSimOptions(wait_header=False, cold_start_ms=1)) as c:
        r = await http.get(f"http://{c.addresses[0]}/r/app/f?ms=0")
        assert r.status == 200
        assert "Xxx-Fxlb-Wait" not in r.headers
        assert r.headers["Fnsim-Cold"] == "true"
        r.release()


async def test_a_client_leaving_while_queued_withdraws_its_call(
    http: aiohttp.ClientSession,
) -> None:
    options = FnSimOptions(memory_mb=128, cold_start_ms=1.0, max_wait_s=10.0)
    async with await start_nodes(options=options) as c:
        node = c.nodes[0]
        base = f"http://{c.addresses[0]}"
        long_call = asyncio.create_task(http.get(base + "/r/app/f?ms=400"))
        await until(lambda: node.stats().running > 0)
        impatient = asyncio.create_task(http.get(base + "/r/app/f"))
        await until(lambda: node.stats().queued > 0)
        impatient.cancel()
        with pytest.raises(asyncio.CancelledError):
            await impatient
        await until(lambda: node.stats().cancelled > 0)
        assert node.stats().cancelled == 1
        assert node.stats().queued == 0
        async with await long_call as r:
            assert r.status == 200
        assert node.stats().completed == 1


async def test_a_node_stops_and_starts_again_on_the_same_port(
    cluster: FnSimCluster, http: aiohttp.ClientSession
) -> None:
    address = cluster.addresses[0]
    async with http.get(f"http://{address}/r/app/f") as r:
        assert r.status == 200
    await cluster.stop(0)
    assert not cluster.nodes[0].running
    with pytest.raises(aiohttp.ClientConnectionError):
        async with http.get(f"http://{address}/version"):
            pass
    async with http.get(f"http://{cluster.addresses[1]}/version") as r:
        assert r.status == 200
    await cluster.start(0)
    assert cluster.addresses[0] == address
    async with http.get(f"http://{address}/r/app/f") as r:
        assert r.status == 200
        # A restarted server has no hot containers.
        assert r.headers["Fnsim-Cold"] == "true"
    assert cluster.nodes[0].stats().calls == 1


async def test_a_call_in_flight_finishes_during_a_graceful_stop(
    cluster: FnSimCluster, http: aiohttp.ClientSession
) -> None:
    node = cluster.nodes[0]
    call = asyncio.create_task(http.get(f"http://{node.address}/r/app/f?ms=200"))
    await until(lambda: node.stats().running > 0)
    await cluster.stop(0)
    async with await call as r:
        assert r.status == 200
        assert parse_go_duration(r.headers["Xxx-Fxlb-Wait"]) == pytest.approx(0.03)


async def test_a_node_shutting_down_answers_503_to_new_calls(
    cluster: FnSimCluster, http: aiohttp.ClientSession
) -> None:
    node = cluster.nodes[0]
    node.begin_shutdown()
    async with http.get(f"http://{node.address}/r/app/f") as r:
        assert r.status == 503
        assert await r.json() == {"error": {"message": "Server is shutting down"}}
        assert r.headers["Fn-Call-Id"]
    assert node.stats().calls == 0


async def test_consecutive_ports_from_a_given_port() -> None:
    # Ports above one just seen free; another process may take one meanwhile, so retry.
    for _ in range(10):
        async with await start_nodes(1) as probe:
            free = int(probe.addresses[0].rsplit(":", 1)[1])
        try:
            c = await start_nodes(2, port=free, options=QUICK)
        except OSError:
            continue
        async with c:
            assert c.addresses == [f"127.0.0.1:{free}", f"127.0.0.1:{free + 1}"]
            assert c.nodes[1].running
        return
    pytest.skip("no two consecutive free ports found")


async def test_bad_options_are_refused_before_listening() -> None:
    with pytest.raises(ValueError, match="fn_memory_mb"):
        await start_nodes(options=FnSimOptions(memory_mb=64))
    with pytest.raises(ValueError, match="count"):
        await start_nodes(0)
