"""The pod watcher against a real HTTP API server on loopback (testkit/k8s_apiserver.py).

Each scenario drives the server (scale, readiness, broken streams, 410, token rotation, 403,
unrelated pods) and waits for the watcher's node set to match; no timing is asserted.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from fnlb.discovery.k8s_client import PodWatcher
from fnlb.discovery.k8s_config import from_kubeconfig
from fnlb.discovery.k8s_watch import NodeChange
from testkit.k8s_apiserver import FakeApiServer
from testkit.k8s_pods import pod
from tests.support import wait_for


def nodes(n: int) -> set[str]:
    return {f"10.1.{i // 250}.{i % 250 + 1}:8080" for i in range(n)}


@contextlib.asynccontextmanager
async def api_server(**kwargs: object) -> AsyncIterator[FakeApiServer]:
    server = FakeApiServer(**kwargs)  # type: ignore[arg-type]
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


@contextlib.asynccontextmanager
async def watching(
    server: FakeApiServer,
    tmp_path: Path,
    selector: str = "app=fn",
    token_file: str = "",
    watch_timeout_s: int = 300,
) -> AsyncIterator[tuple[PodWatcher, list[NodeChange]]]:
    config = tmp_path / "kubeconfig"
    config.write_text(json.dumps(server.kubeconfig(token_file)))  # JSON is YAML
    changes: list[NodeChange] = []
    watcher = PodWatcher(
        from_kubeconfig(str(config)),
        selector,
        8080,
        changes.append,
        base_delay=0.05,
        max_delay=0.2,
        watch_timeout_s=watch_timeout_s,
    )
    await watcher.start()
    try:
        yield watcher, changes
    finally:
        await watcher.stop()


def watches(server: FakeApiServer) -> list[dict[str, str]]:
    return [q for q in server.requests if q.get("watch")]


async def test_pods_scale_from_0_to_50_to_3(tmp_path: Path) -> None:
    async with api_server() as server, watching(server, tmp_path) as (watcher, changes):
        await wait_for(lambda: watcher.ready[0])
        assert watcher.watch.nodes == frozenset()
        server.scale(50)
        await wait_for(lambda: watcher.watch.nodes == nodes(50))
        server.scale(3)
        await wait_for(lambda: watcher.watch.nodes == nodes(3))
        assert changes[-1].nodes == nodes(3)
        assert watcher.watch.counters["lists"] == 1  # all by watch events
        assert server.requests[0]["labelSelector"] == "app=fn"


async def test_a_pod_that_turns_unready_or_terminates_leaves(tmp_path: Path) -> None:
    async with api_server() as server:
        server.scale(3)
        async with watching(server, tmp_path) as (watcher, _):
            await wait_for(lambda: watcher.watch.nodes == nodes(3))
            server.put(pod("fn-1", "10.1.0.2", ready=False))
            await wait_for(lambda: watcher.watch.nodes == nodes(3) - {"10.1.0.2:8080"})
            server.put(pod("fn-0", "10.1.0.1", terminating=True))
            await wait_for(lambda: watcher.watch.nodes == {"10.1.0.3:8080"})


async def test_a_watch_broken_mid_event_resumes_from_the_last_complete_event(
    tmp_path: Path,
) -> None:
    async with api_server() as server, watching(server, tmp_path) as (watcher, changes):
        server.scale(2)
        await wait_for(lambda: watcher.watch.nodes == nodes(2))
        rv = watcher.watch.resource_version
        server.drop_watches(mid_event=True)
        server.scale(4)  # changes while the stream is down arrive on the next watch
        await wait_for(lambda: watcher.watch.nodes == nodes(4))
        assert all("10.9.9.9:8080" not in c.nodes for c in changes)  # the cut event
        assert watcher.watch.counters["lists"] == 1  # resumed, not relisted
        assert "failed_conn" not in watcher.watch.counters  # a watch that ended, not a failure
        assert [q["resourceVersion"] for q in watches(server)][-1] == rv


async def test_an_expired_resource_version_relists(tmp_path: Path) -> None:
    async with api_server() as server, watching(server, tmp_path) as (watcher, _):
        server.scale(3)
        await wait_for(lambda: watcher.watch.nodes == nodes(3))
        server.drop_watches()
        server.scale(5)
        server.compact()  # the changes above are gone from the history: 410
        await wait_for(lambda: watcher.watch.nodes == nodes(5))
        assert watcher.watch.counters["lists"] == 2
        assert 410 in server.statuses


async def test_a_410_error_event_inside_the_stream_relists(tmp_path: Path) -> None:
    async with api_server() as server, watching(server, tmp_path) as (watcher, _):
        server.gone_as_event = True
        server.scale(2)
        await wait_for(lambda: watcher.watch.nodes == nodes(2))
        server.drop_watches()
        server.delete("fn", "fn-0")
        server.compact()
        await wait_for(lambda: watcher.watch.nodes == {"10.1.0.2:8080"})
        assert watcher.watch.counters["lists"] == 2
        assert 410 not in server.statuses  # it came as an event, not a status


async def test_a_bookmark_moves_where_the_next_watch_starts(tmp_path: Path) -> None:
    async with api_server() as server, watching(server, tmp_path) as (watcher, _):
        await wait_for(lambda: watcher.ready[0] and server.watch_count == 1)
        server.put(pod("other", "10.7.0.1", labels={"app": "other"}))  # moves the RV only
        server.bookmark()
        await wait_for(lambda: watcher.watch.resource_version == str(server.rv))
        server.drop_watches()
        await wait_for(lambda: len(watches(server)) == 2)
        assert watches(server)[-1]["resourceVersion"] == str(server.rv)
        assert watches(server)[-1]["allowWatchBookmarks"] == "true"


async def test_a_rotated_token_is_read_again(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("token-1\n")
    async with (
        api_server() as server,
        watching(server, tmp_path, token_file=str(token)) as (watcher, _),
    ):
        server.scale(1)
        await wait_for(lambda: watcher.watch.nodes == nodes(1))
        server.tokens = {"token-2"}  # the old token expired
        server.drop_watches()
        await wait_for(lambda: not watcher.ready[0])
        assert "401" in watcher.ready[1]
        token.write_text("token-2\n")  # the kubelet wrote the new one
        server.scale(2)
        await wait_for(lambda: watcher.ready[0] and watcher.watch.nodes == nodes(2))


async def test_403_fails_readiness_with_a_clear_reason(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with api_server() as server:
        server.forbidden = True
        async with watching(server, tmp_path) as (watcher, _):
            await wait_for(lambda: 403 in server.statuses)
            ready, why = watcher.ready
            assert not ready
            assert "403" in why
            assert "forbidden" in why
            assert any("Role" in r.getMessage() for r in caplog.records)
            server.forbidden = False
            await wait_for(lambda: watcher.ready[0])


async def test_a_thousand_unrelated_pods_are_not_nodes(tmp_path: Path) -> None:
    async with api_server() as server:
        for i in range(1000):
            ns = "fn" if i % 2 else "other"
            server.put(
                pod(f"x-{i}", f"10.2.{i // 250}.{i % 250 + 1}", namespace=ns, labels={"app": "web"})
            )
        server.scale(3)
        async with watching(server, tmp_path) as (watcher, _):
            await wait_for(lambda: watcher.watch.nodes == nodes(3))
            assert watcher.watch.pod_count == 3


async def test_a_large_list_is_read_in_pages(tmp_path: Path) -> None:
    async with api_server() as server:
        server.scale(1200)
        async with watching(server, tmp_path) as (watcher, _):
            await wait_for(lambda: watcher.watch.nodes == nodes(1200), within=20)
        lists = [q for q in server.requests if not q.get("watch")]
        assert len(lists) == 3
        assert "continue" in lists[1]


async def test_a_watch_the_server_times_out_is_resumed_from_its_resource_version(
    tmp_path: Path,
) -> None:
    async with (
        api_server() as server,
        watching(server, tmp_path, watch_timeout_s=1) as (watcher, _),
    ):
        server.scale(2)
        await wait_for(lambda: watcher.watch.nodes == nodes(2))
        await wait_for(lambda: watcher.watch.counters.get("watch_ends", 0) >= 1)
        await wait_for(lambda: len(watches(server)) >= 2)
        first, second = watches(server)[:2]
        assert 1 <= int(first["timeoutSeconds"]) <= 2  # asked the server to end it
        assert second["resourceVersion"] == str(server.rv)  # resumed, no relist
        assert watcher.watch.counters["lists"] == 1
