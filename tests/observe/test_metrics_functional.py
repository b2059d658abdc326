"""`/metrics` counts calls, latencies, retries, health checks and state changes, and passes
`promtool check metrics` (Prometheus' own linter of names, types and help)."""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
import time

import aiohttp
import pytest
from aiohttp import web

from fnlb.gossip import codec
from tests.support import Backend, running_balancer, wait_for


def sample(text: str, name: str, **labels: str) -> float:
    """The value of the one sample of `name` whose labels include `labels`."""
    found = []
    for line in text.splitlines():
        m = re.match(r"^([a-zA-Z_:][\w:]*)(\{(.*)\})? (\S+)$", line)
        if not m or m.group(1) != name:
            continue
        have = dict(re.findall(r'(\w+)="([^"]*)"', m.group(3) or ""))
        if all(have.get(k) == v for k, v in labels.items()):
            found.append(float(m.group(4)))
    assert len(found) == 1, f"{name} {labels}: {found}"
    return found[0]


async def busy(request: web.Request) -> web.StreamResponse:
    return web.json_response({"msg": "busy"}, status=503, headers={"Retry-After": "15"})


async def scrape(lb_mgmt: str) -> str:
    async with aiohttp.ClientSession() as client, client.get(f"http://{lb_mgmt}/metrics") as r:
        assert r.status == 200
        return await r.text()


async def test_calls_are_counted_by_node_status_and_routing_outcome() -> None:
    good, full = Backend("good"), Backend("full", busy)
    await good.start()
    await full.start()
    try:
        async with running_balancer(
            nodes=f"{good.address},{full.address}", routing="rendezvous"
        ) as lb:
            await wait_for(lambda: list(lb.peer.view.states.values()) == ["online"] * 2)
            # 40 functions: some have the busy node as home (answered after a retry), the
            # others the good one (answered at home)
            async with aiohttp.ClientSession() as client:
                statuses = []
                for i in range(40):
                    async with client.post(f"http://{lb.listen_address}/r/app/fn{i}") as r:
                        await r.read()
                        statuses.append(r.status)
            assert set(statuses) == {200}
            text = await scrape(str(lb.mgmt_address))
    finally:
        await good.stop()
        await full.stop()
    at_home = sample(text, "fnlb_calls_total", node=good.address, code="2xx", routing="home")
    retried = sample(text, "fnlb_calls_total", node=good.address, code="2xx", routing="retry")
    busy_left = sample(text, "fnlb_retries_total", node=full.address, reason="busy")
    assert at_home + retried == 40
    assert retried == busy_left == len(full.seen)
    assert retried > 0  # 40 keys: both nodes are some functions' home
    assert at_home > 0
    count = sample(text, "fnlb_call_duration_seconds_count", node=good.address)
    assert count == 40
    assert sample(text, "fnlb_call_duration_seconds_bucket", node=good.address, le="+Inf") == 40
    # every answer of the test backend carries Xxx-Fxlb-Wait: 1.5ms
    assert sample(text, "fnlb_call_wait_seconds_bucket", node=good.address, le="0.001") == 0
    assert sample(text, "fnlb_call_wait_seconds_bucket", node=good.address, le="0.0025") == 40
    assert sample(text, "fnlb_call_wait_seconds_sum", node=good.address) == pytest.approx(0.06)
    assert sample(text, "fnlb_upstream_first_byte_seconds_count", node=good.address) == 40
    assert sample(text, "fnlb_health_checks_total", node=good.address, result="ok") >= 1
    assert sample(text, "fnlb_node_state_changes_total", node=good.address, state="online") == 1
    assert sample(text, "fnlb_call_errors_total", reason="no_node") == 0
    assert sample(text, "fnlb_build_info", routing="rendezvous") == 1
    assert "process_cpu_seconds_total" in text
    assert "python_info" in text


async def hang_up(request: web.Request) -> web.StreamResponse:
    assert request.transport is not None
    request.transport.close()  # after the call arrived: it may have run
    raise asyncio.CancelledError


async def test_fnlb_own_errors_are_counted() -> None:
    broken = Backend("broken", hang_up)
    await broken.start()
    try:
        async with (
            running_balancer(nodes=f"{broken.address},127.0.0.1:1") as lb,
            aiohttp.ClientSession() as client,
        ):
            await wait_for(lambda: lb.peer.view.states.get(broken.address) == "online")
            await wait_for(lambda: lb.peer.view.states.get("127.0.0.1:1") == "offline")
            async with client.post(f"http://{lb.listen_address}/r/a/b") as r:
                assert r.status == 502  # a POST whose node hung up is never resent
            lb.peer.delete_node(broken.address, int(time.time() * 1000))
            async with client.get(f"http://{lb.listen_address}/r/a/b") as r:
                assert r.status == 503
            text = await scrape(str(lb.mgmt_address))
    finally:
        await broken.stop()
    assert sample(text, "fnlb_call_errors_total", reason="no_node") == 1
    assert sample(text, "fnlb_call_errors_total", reason="failed_after_start") == 1
    assert sample(text, "fnlb_calls_total", node="none", code="5xx", routing="none") == 1
    assert broken.address not in text  # a deleted node's series end with it
    assert sample(text, "fnlb_health_checks_total", node="127.0.0.1:1", result="fail") >= 1
    assert sample(text, "fnlb_node_state_changes_total", node="127.0.0.1:1", state="offline") == 1


async def test_a_connection_that_dies_before_an_answer_is_a_disconnect_retry() -> None:
    broken, good = Backend("broken", hang_up), Backend("good")
    await broken.start()
    await good.start()
    try:
        async with (
            running_balancer(nodes=f"{broken.address},{good.address}", routing="rendezvous") as lb,
            aiohttp.ClientSession() as client,
        ):
            await wait_for(lambda: list(lb.peer.view.states.values()) == ["online"] * 2)
            for i in range(20):  # GET may be resent: the functions homed on `broken` move on
                async with client.get(f"http://{lb.listen_address}/r/app/fn{i}") as r:
                    assert r.status == 200
                if broken.seen:
                    break
            text = await scrape(str(lb.mgmt_address))
    finally:
        await broken.stop()
        await good.stop()
    # one call reached `broken` (aiohttp's own client may have sent it there twice, on a
    # reused connection and a new one) and moved on once
    assert {seen.path_qs for seen in broken.seen} == {broken.seen[0].path_qs}
    assert sample(text, "fnlb_retries_total", node=broken.address, reason="disconnect") == 1
    assert sample(text, "fnlb_calls_total", node=good.address, code="2xx", routing="retry") == 1


async def test_a_client_that_goes_away_is_counted_as_gone() -> None:
    release = asyncio.Event()

    async def slow(request: web.Request) -> web.StreamResponse:
        await release.wait()
        return web.json_response({})

    node = Backend("slow", slow)
    await node.start()
    try:
        async with running_balancer(nodes=node.address) as lb:
            await wait_for(lambda: lb.peer.view.states.get(node.address) == "online")
            url = f"http://{lb.listen_address}/r/app/fn"
            timeout = aiohttp.ClientTimeout(total=0.3)
            with pytest.raises(TimeoutError):
                async with aiohttp.ClientSession(timeout=timeout) as client, client.get(url):
                    pass  # the client gives up while the node still runs the call
            await wait_for(lambda: lb.observer.errors["client_gone"] == 1)
            text = await scrape(str(lb.mgmt_address))
            release.set()
    finally:
        release.set()
        await node.stop()
    assert sample(text, "fnlb_call_errors_total", reason="client_gone") == 1
    assert sample(text, "fnlb_calls_total", node=node.address, code="4xx", routing="home") == 1


async def test_calls_off_keeps_the_counters_at_zero() -> None:
    backend = Backend("n")
    await backend.start()
    try:
        async with running_balancer(nodes=backend.address, call_metrics=False) as lb:
            await wait_for(lambda: lb.peer.view.states.get(backend.address) == "online")
            async with (
                aiohttp.ClientSession() as client,
                client.get(f"http://{lb.listen_address}/r/a/b") as r,
            ):
                assert r.status == 200
            text = await scrape(str(lb.mgmt_address))
    finally:
        await backend.stop()
    assert "fnlb_calls_total{" not in text


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed (bootstrap)")
async def test_the_page_passes_promtool(tmp_path: object) -> None:
    backend = Backend("n")
    await backend.start()
    try:
        async with running_balancer(nodes=f"{backend.address},127.0.0.1:1") as lb:
            await wait_for(lambda: lb.peer.view.states.get(backend.address) == "online")
            async with aiohttp.ClientSession() as client:
                for _ in range(3):
                    async with client.get(f"http://{lb.listen_address}/r/a/b") as r:
                        await r.read()
            text = await scrape(str(lb.mgmt_address))
    finally:
        await backend.stop()
    await promtool_passes(text)


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed (bootstrap)")
async def test_a_cluster_peers_page_passes_promtool_with_gossip_and_ack_families() -> None:
    from testkit.peers import peers

    async with peers(2) as group:
        cluster = group[0].cluster
        assert cluster is not None
        # a node-list change: one write ack
        await cluster.keep(group[0].peer.put_node("127.0.0.1:1", int(time.time() * 1000)))
        gossip = group[0].gossip
        assert gossip is not None
        await wait_for(lambda: sum(gossip.member.received.values()) > 0, within=15)
        await wait_for(lambda: sum(gossip.member.sent.values()) > 0, within=15)
        # the probe rounds start after the join: wait for the ping the page must show
        await wait_for(lambda: gossip.member.sent.get(codec.PING, 0) > 0, within=15)
        text = await scrape(str(group[0].mgmt_address))
    await promtool_passes(text)
    assert sample(text, "fnlb_write_acks_total", outcome="held") == 1
    for direction in ("sent", "received"):
        counts = [
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith(f'fnlb_gossip_messages_total{{direction="{direction}"')
        ]
        assert sum(counts) > 0, direction
    assert 'type="ping"' in text


async def promtool_passes(text: str) -> None:
    """`promtool check metrics` takes the page without a word (no error, no lint warning)."""
    result = await asyncio.to_thread(
        subprocess.run,
        ["promtool", "check", "metrics"],
        input=text,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout + result.stderr == ""
