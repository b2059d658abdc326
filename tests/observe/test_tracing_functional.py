"""`-zipkin`: spans of calls and attempts reach a collector the test runs; W3C and B3
context in, W3C context out to the node; sampling."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from fnlb.observe.zipkin import QUEUE_LIMIT, ZipkinExporter
from fnlb.routing.function_key import function_key
from tests.support import Backend, running_balancer, wait_for

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = "00f067aa0ba902b7"


class Collector:
    """A Zipkin collector on loopback: records every span posted to it, by API version."""

    def __init__(self) -> None:
        self.posts: dict[str, list[list[dict[str, Any]]]] = {"v1": [], "v2": []}
        self.url = ""
        self._runner: web.AppRunner | None = None

    async def _spans(self, request: web.Request) -> web.Response:
        version = request.match_info["v"]
        assert request.content_type == "application/json"
        self.posts[version].append(json.loads(await request.read()))
        return web.Response(status=202)

    def spans(self, version: str = "v2") -> list[dict[str, Any]]:
        return [span for post in self.posts[version] for span in post]

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/api/{v}/spans", self._spans)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        server: Any = site._server
        self.url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


@contextlib.asynccontextmanager
async def collector() -> AsyncIterator[Collector]:
    c = Collector()
    await c.start()
    try:
        yield c
    finally:
        await c.stop()


@contextlib.asynccontextmanager
async def backends(*handlers: Any) -> AsyncIterator[list[Backend]]:
    started = [Backend(f"n{i}", h) for i, h in enumerate(handlers)]
    for b in started:
        await b.start()
    try:
        yield started
    finally:
        for b in started:
            await b.stop()


async def call(url: str, headers: dict[str, str] | None = None) -> int:
    async with aiohttp.ClientSession() as client, client.post(url, headers=headers) as r:
        await r.read()
        return r.status


async def test_a_call_and_its_attempt_become_spans_under_the_callers_trace() -> None:
    async with collector() as zipkin, backends(None) as (node,):
        async with running_balancer(nodes=node.address, zipkin=f"{zipkin.url}/api/v2/spans") as lb:
            await wait_for(lambda: lb.peer.view.states.get(node.address) == "online")
            headers = {"traceparent": f"00-{TRACE}-{PARENT}-01", "tracestate": "vendor=1"}
            assert await call(f"http://{lb.listen_address}/r/app/fn", headers) == 200
        # stopping flushes what is queued
        sent = node.seen[-1].headers
        spans = zipkin.spans()
    version, trace_id, attempt_id, flags = sent["traceparent"].split("-")
    assert (version, trace_id, flags) == ("00", TRACE, "01")
    assert sent["tracestate"] == "vendor=1"
    (server,) = [s for s in spans if s["kind"] == "SERVER"]
    (client,) = [s for s in spans if s["kind"] == "CLIENT"]
    assert server["traceId"] == client["traceId"] == TRACE
    assert server["parentId"] == PARENT
    assert client["parentId"] == server["id"]
    assert client["id"] == attempt_id  # the node's spans hang under the attempt
    assert server["name"] == "post"
    assert server["tags"]["fnlb.node"] == node.address
    assert server["tags"]["fnlb.routing"] == "home"
    assert server["tags"]["http.status_code"] == "200"
    assert server["tags"]["http.path"] == "/r/app/fn"
    assert client["tags"]["fnlb.result"] == "answered"
    assert client["tags"]["fnlb.routing"] == "home"
    assert client["remoteEndpoint"] == {"ipv4": "127.0.0.1", "port": node.port, "serviceName": "fn"}
    assert server["duration"] >= client["duration"] > 0


async def busy(request: web.Request) -> web.StreamResponse:
    return web.json_response({}, status=503, headers={"Retry-After": "15"})


async def test_a_retried_call_has_one_span_per_attempt() -> None:
    async with collector() as zipkin, backends(busy, None) as (full, good):
        async with running_balancer(
            nodes=f"{full.address},{good.address}",
            routing="rendezvous",
            zipkin=zipkin.url,  # no path: v2 at /api/v2/spans
        ) as lb:
            await wait_for(lambda: list(lb.peer.view.states.values()) == ["online"] * 2)
            path = next(
                f"/r/app/f{i}"
                for i in range(100)
                if lb.peer.view.candidates(function_key(f"/r/app/f{i}"))[0] == full.address
            )
            assert await call(f"http://{lb.listen_address}{path}") == 200
        spans = zipkin.spans()
    (server,) = [s for s in spans if s["kind"] == "SERVER"]
    attempts = sorted((s for s in spans if s["kind"] == "CLIENT"), key=lambda s: s["timestamp"])
    assert [a["tags"]["fnlb.node"] for a in attempts] == [full.address, good.address]
    assert [a["tags"]["fnlb.result"] for a in attempts] == ["busy", "answered"]
    assert attempts[0]["tags"]["http.status_code"] == "503"
    assert server["tags"]["fnlb.routing"] == "retry"
    assert server["tags"]["fnlb.attempts"] == "2"
    assert "parentId" not in server  # a new trace: the caller sent none
    # each attempt told its node its own span id
    sent = [full.seen[-1].headers["traceparent"], good.seen[-1].headers["traceparent"]]
    assert [t.split("-")[2] for t in sent] == [a["id"] for a in attempts]


async def test_a_v1_url_gets_zipkin_v1_json() -> None:
    async with collector() as zipkin, backends(None) as (node,):
        async with running_balancer(nodes=node.address, zipkin=f"{zipkin.url}/api/v1/spans") as lb:
            await wait_for(lambda: lb.peer.view.states.get(node.address) == "online")
            assert await call(f"http://{lb.listen_address}/r/app/fn") == 200
        spans = zipkin.spans("v1")
    assert zipkin.posts["v2"] == []
    values = sorted(a["value"] for s in spans for a in s["annotations"])
    assert values == ["cr", "cs", "sr", "ss"]
    server = next(s for s in spans if s["annotations"][0]["value"] == "sr")
    keys = {b["key"] for b in server["binaryAnnotations"]}
    assert {"fnlb.node", "fnlb.routing", "http.status_code", "ca"} <= keys


@pytest.mark.parametrize(
    ("headers", "trace_id", "parent"),
    [
        ({"b3": f"{TRACE}-{PARENT}-1"}, TRACE, PARENT),
        ({"X-B3-TraceId": "a3ce929d0e0e4736", "X-B3-SpanId": PARENT, "X-B3-Sampled": "1"},
         "0000000000000000a3ce929d0e0e4736", PARENT),
    ],
)  # fmt: skip
async def test_b3_context_is_accepted(headers: dict[str, str], trace_id: str, parent: str) -> None:
    async with collector() as zipkin, backends(None) as (node,):
        async with running_balancer(nodes=node.address, zipkin=zipkin.url) as lb:
            await wait_for(lambda: lb.peer.view.states.get(node.address) == "online")
            assert await call(f"http://{lb.listen_address}/r/app/fn", headers) == 200
        spans = zipkin.spans()
        sent = node.seen[-1].headers
    (server,) = [s for s in spans if s["kind"] == "SERVER"]
    assert (server["traceId"], server["parentId"]) == (trace_id, parent)
    assert sent["traceparent"].split("-")[1] == trace_id
    assert "X-B3-SpanId" not in sent  # the caller's span is not the node's parent
    assert sent["b3"].split("-")[:3] == [trace_id, sent["traceparent"].split("-")[2], "1"]


async def test_sampling_rate_zero_traces_only_calls_the_caller_sampled() -> None:
    async with collector() as zipkin, backends(None) as (node,):
        async with running_balancer(
            nodes=node.address, zipkin=zipkin.url, trace_sample_rate=0.0
        ) as lb:
            await wait_for(lambda: lb.peer.view.states.get(node.address) == "online")
            url = f"http://{lb.listen_address}/r/app/fn"
            assert await call(url) == 200
            assert "traceparent" not in node.seen[-1].headers
            unsampled = f"00-{TRACE}-{PARENT}-00"
            assert await call(url, {"traceparent": unsampled}) == 200
            assert node.seen[-1].headers["traceparent"] == unsampled  # passed on as it came
            assert await call(url, {"traceparent": f"00-{TRACE}-{PARENT}-01"}) == 200
        spans = zipkin.spans()
    assert {s["traceId"] for s in spans} == {TRACE}
    assert len([s for s in spans if s["kind"] == "SERVER"]) == 1


async def test_an_unreachable_collector_costs_dropped_spans_not_calls() -> None:
    async with (
        backends(None) as (node,),
        running_balancer(nodes=node.address, zipkin="http://127.0.0.1:1") as lb,
    ):
        await wait_for(lambda: lb.peer.view.states.get(node.address) == "online")
        assert await call(f"http://{lb.listen_address}/r/app/fn") == 200
        assert lb.zipkin is not None
        await lb.zipkin.flush()
        assert lb.zipkin.spans["failed"] == 2


def span(n: int) -> dict[str, Any]:
    return {"traceId": TRACE, "id": f"{n:016x}", "name": "post", "kind": "SERVER",
            "timestamp": 1, "duration": 1, "localEndpoint": {"serviceName": "fnlb"}}  # fmt: skip


async def test_a_dead_collector_costs_one_post_per_flush_and_a_full_queue_drops() -> None:
    exporter = ZipkinExporter("http://127.0.0.1:1/api/v2/spans", batch=2)
    exporter.start(timer=False)
    try:
        for n in range(3):
            exporter.add([span(2 * n), span(2 * n + 1)])
        await exporter.flush()
        assert exporter.spans["failed"] == 2  # the first batch; the others wait
        exporter.add([span(99)] * (QUEUE_LIMIT - 4))  # fills the queue to its limit
        exporter.add([span(100)])
        assert exporter.spans["dropped"] == 1
    finally:
        await exporter.stop()


async def test_batches_reach_a_live_collector_as_json_arrays() -> None:
    async with collector() as zipkin:
        exporter = ZipkinExporter(zipkin.url, batch=3)
        exporter.start(timer=False)
        try:
            for n in range(4):
                exporter.add([span(2 * n), span(2 * n + 1)])
            await exporter.flush()
        finally:
            await exporter.stop()
    assert [len(post) for post in zipkin.posts["v2"]] == [4, 4]  # whole calls, >= 3 a post
    assert [s["id"] for s in zipkin.spans()] == [f"{n:016x}" for n in range(8)]
    assert exporter.spans["sent"] == 8


async def test_after_a_failed_post_the_exporter_waits_an_interval_however_full() -> None:
    posts = 0

    async def refuse(request: web.Request) -> web.Response:
        nonlocal posts
        posts += 1
        return web.Response(status=500)

    app = web.Application()
    app.router.add_post("/api/v2/spans", refuse)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    server: Any = site._server
    url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/api/v2/spans"
    exporter = ZipkinExporter(url, batch=2, interval=3600)  # the next try: an hour away
    exporter.start()
    try:
        exporter.add([span(0), span(1)])  # a full batch wakes the task: one post, refused
        await wait_for(lambda: exporter.spans["failed"] == 2)
        for n in range(50):  # the queue stays full; every add would wake a healthy task
            exporter.add([span(n), span(n)])
            await asyncio.sleep(0)
        assert posts == 1
    finally:
        await exporter.stop()  # stop() still tries once
        await runner.cleanup()
    assert posts == 2
