"""`fnlb serve -workers N`: worker processes share the traffic port, route on the primary's
view, report every call to it, are restarted when they die and stop with it."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from tests.support import Backend
from tests.support_proc import FnlbProcess


def workers_of(fnlb: FnlbProcess) -> list[int]:
    pid = fnlb.proc.pid
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return sorted(int(c) for c in children)


async def eventually(check: object, within: float = 15.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        result = check() if callable(check) else check
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        assert loop.time() < deadline, "not reached in time"
        await asyncio.sleep(0.05)


async def calls(fnlb: FnlbProcess, count: int, path: str = "/r/app/fn") -> list[int]:
    """`count` calls, each on its own connection (so the kernel picks a worker for each)."""

    async def one(i: int) -> int:
        async with (
            aiohttp.ClientSession() as c,
            c.post(fnlb.url(f"{path}{i % 7}"), data=b"x" * 10) as r,
        ):
            await r.read()
            return r.status

    async with asyncio.timeout(20):  # a worker that never accepts must fail the test
        return list(await asyncio.gather(*(one(i) for i in range(count))))


async def online(fnlb: FnlbProcess, node: Backend) -> None:
    async with aiohttp.ClientSession() as c:

        async def check() -> bool:
            async with c.get(fnlb.mgmt_url("/1/lb/nodes")) as r:
                return bool((await r.json())["nodes"].get(node.address) == "online")

        await eventually(check)


@pytest.fixture
async def node() -> AsyncIterator[Backend]:
    b = Backend("n")
    await b.start()
    yield b
    await b.stop()


async def test_every_worker_serves_calls_and_the_primary_counts_them_all(node: Backend) -> None:
    fnlb = FnlbProcess(f"-nodes={node.address}", "-hc-interval=0.2", "-workers=2")
    try:
        await online(fnlb, node)
        workers = workers_of(fnlb)
        assert len(workers) == 2
        # With one worker stopped, the other takes every call; then the other way round:
        # both accept from the one shared socket.
        for paused in workers:
            os.kill(paused, signal.SIGSTOP)
            try:
                assert set(await calls(fnlb, 20)) == {200}
            finally:
                os.kill(paused, signal.SIGCONT)
        assert len(node.seen) == 40

        async def all_counted() -> bool:
            async with (
                aiohttp.ClientSession() as c,
                c.get(fnlb.mgmt_url("/1/lb/stats")) as r,
            ):
                stats: list[dict[str, int]] = (await r.json())["stats"]
                return sum(s["tp"] for s in stats) == 40

        await eventually(all_counted)  # each worker's calls reach the primary's figures
    finally:
        fnlb.stop()


async def test_a_new_node_reaches_every_workers_view(node: Backend) -> None:
    other = Backend("other")
    await other.start()
    fnlb = FnlbProcess(f"-nodes={node.address}", "-hc-interval=0.2", "-workers=2")
    try:
        await online(fnlb, node)
        async with (
            aiohttp.ClientSession() as c,
            c.put(fnlb.mgmt_url("/1/lb/nodes"), json={"node": other.address}) as r,
        ):
            assert r.status == 200
        await online(fnlb, other)

        async def both_nodes_used() -> bool:
            before = len(other.seen)
            await calls(fnlb, 28, "/r/spread/f")
            return len(other.seen) > before

        await eventually(both_nodes_used)
    finally:
        fnlb.stop()
        await other.stop()


async def test_a_worker_that_dies_is_started_again_and_calls_go_on(node: Backend) -> None:
    fnlb = FnlbProcess(f"-nodes={node.address}", "-hc-interval=0.2", "-workers=2")
    try:
        await online(fnlb, node)
        first = workers_of(fnlb)
        os.kill(first[0], signal.SIGKILL)
        await eventually(lambda: len(workers_of(fnlb)) == 2 and first[0] not in workers_of(fnlb))
        assert first[1] in workers_of(fnlb)  # the other one was left alone
        assert set(await calls(fnlb, 20)) == {200}
    finally:
        fnlb.stop()


async def test_the_api_answers_through_the_workers_on_a_shared_port(node: Backend) -> None:
    fnlb = FnlbProcess(f"-nodes={node.address}", "-hc-interval=0.2", "-workers=2", shared_port=True)
    port = fnlb.port
    try:
        await online(fnlb, node)
        for _ in range(10):  # new connections: some land on each worker
            async with (
                aiohttp.ClientSession() as c,
                c.get(f"http://127.0.0.1:{port}/1/lb/nodes") as r,
            ):
                assert r.status == 200
                assert (await r.json())["nodes"] == {node.address: "online"}
        assert set(await calls(fnlb, 10)) == {200}
        assert node.seen  # the calls went to the node, the API requests did not
        assert all(s.path_qs.startswith("/r/") for s in node.seen)
    finally:
        fnlb.stop()


async def test_sigterm_stops_the_workers_too(node: Backend) -> None:
    fnlb = FnlbProcess(f"-nodes={node.address}", "-hc-interval=0.2", "-workers=2")
    try:
        await online(fnlb, node)
        workers = workers_of(fnlb)
        fnlb.signal(signal.SIGTERM)
        assert await asyncio.to_thread(fnlb.wait, 15) == 0
        assert all(_state(pid) in ("gone", "Z") for pid in workers)
    finally:
        fnlb.stop()


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2]
    except OSError:
        return "gone"


async def test_a_worker_dying_leaves_the_calls_of_the_others_alone(node: Backend) -> None:
    release = asyncio.Event()
    started = asyncio.Event()

    async def slow(request: web.Request) -> web.StreamResponse:
        started.set()
        await release.wait()
        return web.json_response({"ok": True})

    node.handler = slow
    fnlb = FnlbProcess(f"-nodes={node.address}", "-hc-interval=0.2", "-workers=2")
    try:
        await online(fnlb, node)
        keep, victim = workers_of(fnlb)
        os.kill(victim, signal.SIGSTOP)  # so the slow call is accepted by `keep`
        call = asyncio.ensure_future(calls(fnlb, 1))
        async with asyncio.timeout(10):
            await started.wait()
        os.kill(victim, signal.SIGKILL)
        await eventually(lambda: victim not in workers_of(fnlb) and len(workers_of(fnlb)) == 2)
        release.set()
        assert await call == [200]  # the call on the other worker went on to its end
        assert keep in workers_of(fnlb)
    finally:
        release.set()
        fnlb.stop()


async def test_workers_stop_when_their_primary_is_killed(node: Backend) -> None:
    fnlb = FnlbProcess(f"-nodes={node.address}", "-hc-interval=0.2", "-workers=2")
    try:
        await online(fnlb, node)
        workers = workers_of(fnlb)
        # Frozen, the primary reads none of the attempts the workers report: killed then,
        # it resets their links (ECONNRESET rather than a clean end of stream).
        fnlb.signal(signal.SIGSTOP)
        assert set(await calls(fnlb, 5)) == {200}  # the workers serve on their own meanwhile
        await asyncio.sleep(0.2)  # a tick: the reports are sent (the test holds either way)
        fnlb.signal(signal.SIGKILL)
        await eventually(lambda: all(_state(pid) in ("gone", "Z") for pid in workers))
    finally:
        fnlb.stop()


async def test_a_node_a_worker_cannot_reach_goes_offline_in_the_primarys_peer(
    node: Backend,
) -> None:
    other = Backend("other")
    await other.start()
    # Health checks every minute: only the workers' reports (Peer.connect_failed, which
    # also confirms at once) can take the node out within the test.
    fnlb = FnlbProcess(
        f"-nodes={node.address},{other.address}",
        "-hc-interval=60",
        "-routing=rendezvous",
        "-workers=2",
    )
    try:
        await online(fnlb, node)
        await online(fnlb, other)
        await other.stop()
        assert set(await calls(fnlb, 28)) == {200}  # moved on to the live node

        async def offline() -> bool:
            async with (
                aiohttp.ClientSession() as c,
                c.get(fnlb.mgmt_url("/1/lb/nodes")) as r,
            ):
                return bool((await r.json())["nodes"].get(other.address) == "offline")

        await eventually(offline)
    finally:
        fnlb.stop()
