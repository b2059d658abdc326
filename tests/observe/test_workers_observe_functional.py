"""`-workers N`: calls served by worker processes show on the primary's /metrics, leave their
access lines and send their spans, as calls served by one process do."""

from __future__ import annotations

import asyncio
import json
import os
import signal

import aiohttp
import pytest

from tests.observe.test_tracing_functional import collector
from tests.support import Backend
from tests.support_proc import FnlbProcess
from tests.test_workers_functional import calls, eventually, online, workers_of


@pytest.fixture(autouse=True)
def fast_plane_only(data_plane: str) -> None:
    if data_plane != "fast":
        pytest.skip("-workers serve calls on the fast plane only")


async def has_counted(fnlb: FnlbProcess, node: str, calls: int) -> bool:
    """Whether the primary's /metrics counts `calls` calls to `node` (all codes, outcomes)."""
    async with aiohttp.ClientSession() as c, c.get(fnlb.mgmt_url("/metrics")) as r:
        text = await r.text()
    label = f'node="{node}"'
    total = sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("fnlb_calls_total{") and label in line
    )
    return total == calls


async def spans_sent(fnlb: FnlbProcess, at_least: int) -> bool:
    async with aiohttp.ClientSession() as c, c.get(fnlb.mgmt_url("/metrics")) as r:
        text = await r.text()
    sent = [
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith('fnlb_trace_spans_total{result="sent"}')
    ]
    return bool(sent) and sent[0] >= at_least * 2  # a server and a client span per call


async def test_workers_calls_reach_metrics_access_log_and_traces() -> None:
    node = Backend("n")
    await node.start()
    try:
        async with collector() as zipkin:
            fnlb = await asyncio.to_thread(
                FnlbProcess,
                f"-nodes={node.address}",
                "-hc-interval=0.2",
                "-workers=2",
                "-access-log",
                "-log-format=json",
                f"-zipkin={zipkin.url}/api/v2/spans",
            )
            try:
                await online(fnlb, node)
                workers = workers_of(fnlb)
                for paused in workers:  # each worker in turn serves every call
                    os.kill(paused, signal.SIGSTOP)
                    try:
                        assert set(await calls(fnlb, 10)) == {200}
                    finally:
                        os.kill(paused, signal.SIGCONT)
                await eventually(lambda: has_counted(fnlb, node.address, 20))
                # a worker killed keeps its figures on the primary's page (counters never
                # go down), and its successor counts from there
                os.kill(workers[0], signal.SIGKILL)
                await eventually(lambda: len(workers_of(fnlb)) == 2)
                assert set(await calls(fnlb, 4)) == {200}
                await eventually(lambda: has_counted(fnlb, node.address, 24))
                # the workers' exporters' counts reach the primary's page too (the killed
                # worker's unsent spans may be lost with it)
                await eventually(lambda: spans_sent(fnlb, 14))
                fnlb.signal(signal.SIGTERM)
                assert await asyncio.to_thread(fnlb.wait, 15) == 0
                output = fnlb.output()
            finally:
                fnlb.stop()
            # spans: every traced call's server span, from whichever worker served it
            await eventually(lambda: len(_servers(zipkin.spans())) >= 14, within=10)
    finally:
        await node.stop()
    lines = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    access = [line for line in lines if line["logger"] == "fnlb.access"]
    assert len(access) >= 14  # the killed worker's unwritten lines are lost with it
    assert {a["status"] for a in access} == {200}
    assert all(a["node"] == node.address for a in access)


def _servers(spans: list[dict[str, object]]) -> list[dict[str, object]]:
    return [s for s in spans if s.get("kind") == "SERVER"]
