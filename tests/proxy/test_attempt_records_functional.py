"""Both data planes tell the Peer the same things about a call (tests/proxy/conftest.py runs
each test on both): the candidates asked once, each attempt started, one `Attempt` record per
attempt with the node's headers parsed once, and a node that cannot be reached reported."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web

from fnlb.routing.attempt import NO_ANSWER, Attempt
from tests.support import Backend, running_balancer, wait_for


@pytest.fixture
async def backends() -> AsyncIterator[list[Backend]]:
    nodes = [Backend(f"n{i}") for i in range(3)]
    for b in nodes:
        await b.start()
    yield nodes
    for b in nodes:
        await b.stop()


async def busy(request: web.Request) -> web.StreamResponse:
    await request.read()
    return web.json_response(
        {"error": {"message": "busy"}}, status=503, headers={"Retry-After": "15"}
    )


async def waited(request: web.Request) -> web.StreamResponse:
    await request.read()
    return web.json_response({"ok": True}, headers={"Xxx-Fxlb-Wait": "12.5ms"})


async def test_a_busy_node_then_an_answer_are_two_records_with_their_headers_parsed(
    backends: list[Backend], monkeypatch: pytest.MonkeyPatch
) -> None:
    # rendezvous: the order of candidates is the view's, known before the call
    async with running_balancer(
        nodes=",".join(b.address for b in backends), routing="rendezvous"
    ) as lb:
        await wait_for(lambda: len(lb.peer.view.routable) == 3)
        order = list(lb.peer.view.candidates("r/app/f"))
        by_address = {b.address: b for b in backends}
        by_address[order[0]].handler = busy
        by_address[order[1]].handler = waited
        records: list[Attempt] = []
        started: list[tuple[str, str]] = []
        finished, begin = lb.peer.attempt_finished, lb.peer.attempt_started

        def record(attempt: Attempt) -> None:
            records.append(attempt)
            finished(attempt)

        def start(key: str, node: str, now: float) -> None:
            started.append((key, node))
            begin(key, node, now)

        monkeypatch.setattr(lb.peer, "attempt_finished", record)
        monkeypatch.setattr(lb.peer, "attempt_started", start)
        async with (
            aiohttp.ClientSession() as client,
            client.post(f"http://{lb.listen_address}/r/app/f", data=b"x") as resp,
        ):
            assert resp.status == 200
            await resp.read()
        await wait_for(lambda: len(records) == 2)
    assert started == [("r/app/f", order[0]), ("r/app/f", order[1])]
    first, second = records
    assert (first.key, first.node, first.path, first.status) == (
        "r/app/f",
        order[0],
        "/r/app/f",
        503,
    )
    assert (first.retry_after_s, first.wait_s, first.answer_s, first.answered_at) == (
        15.0, None, None, None
    )  # fmt: skip
    assert (second.node, second.status, second.retry_after_s) == (order[1], 200, None)
    assert second.wait_s == pytest.approx(0.0125)
    assert second.answer_s is not None
    assert second.answer_s >= 0
    assert second.answered_at is not None
    assert second.ended >= second.answered_at


async def test_an_unreachable_node_is_one_record_without_answer_and_one_connect_failed(
    backends: list[Backend], monkeypatch: pytest.MonkeyPatch
) -> None:
    live = backends[0].address
    with socket.socket() as reserved:  # bound, never listening: connections are refused
        reserved.bind(("127.0.0.1", 0))
        dead = f"127.0.0.1:{reserved.getsockname()[1]}"
        async with running_balancer(nodes=live, hc_interval=60.0) as lb:
            await wait_for(lambda: len(lb.peer.view.routable) == 1)
            records: list[Attempt] = []
            failed: list[str] = []
            finished, fail = lb.peer.attempt_finished, lb.peer.connect_failed

            def record(attempt: Attempt) -> None:
                records.append(attempt)
                finished(attempt)

            def connect_failed(node: str, error: str, now_ms: int) -> None:
                failed.append(node)
                fail(node, error, now_ms)

            # The Peer's answer, fixed: the dead node first.
            monkeypatch.setattr(lb.peer, "candidates", lambda key, path: (dead, live))
            monkeypatch.setattr(lb.peer, "attempt_finished", record)
            monkeypatch.setattr(lb.peer, "connect_failed", connect_failed)
            async with (
                aiohttp.ClientSession() as client,
                client.get(f"http://{lb.listen_address}/r/app/g") as resp,
            ):
                assert resp.status == 200
                await resp.read()
            await wait_for(lambda: len(records) == 2)
    assert failed == [dead]
    assert (records[0].node, records[0].status, records[0].answered_at) == (dead, NO_ANSWER, None)
    assert (records[1].node, records[1].status) == (live, 200)
