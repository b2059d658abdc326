"""fnlb with -db=k8s against the test API server: the node list, the API, probes, peers.

Pod IPs are loopback addresses (127.0.0.2, ...) where small Fn-like servers listen on one
port, so health checks reach real sockets and nothing leaves the machine.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp

from fnlb.server import Balancer
from testkit.k8s_apiserver import FakeApiServer, fn_pods
from testkit.k8s_pods import IPS, pod
from testkit.peers import peers
from tests.support import running_balancer, wait_for


@contextlib.asynccontextmanager
async def cluster_api(tmp_path: Path) -> AsyncIterator[tuple[FakeApiServer, dict[str, Any]]]:
    server = FakeApiServer()
    await server.start()
    config = tmp_path / "kubeconfig"
    config.write_text(json.dumps(server.kubeconfig()))
    try:
        async with fn_pods() as port:
            yield (
                server,
                {
                    "db": "k8s",
                    "kubeconfig": str(config),
                    "label_selector": "app=fn",
                    "target_port": port,
                },
            )
    finally:
        await server.stop()


def ready_pods(server: FakeApiServer, count: int) -> None:
    for i, ip in enumerate(IPS[:count]):
        server.put(pod(f"fn-{i}", ip))


def expected(settings: dict[str, Any], count: int) -> set[str]:
    return {f"{ip}:{settings['target_port']}" for ip in IPS[:count]}


async def mgmt(b: Balancer, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    async with (
        aiohttp.ClientSession() as s,
        s.request(method, f"http://{b.mgmt_address}{path}", json=body) as r,
    ):
        return r.status, await r.json()


async def test_kubernetes_owns_the_node_list_of_a_lone_fnlb(tmp_path: Path) -> None:
    async with cluster_api(tmp_path) as (server, settings):
        ready_pods(server, 3)
        async with running_balancer(**settings) as b:
            await wait_for(lambda: set(b.peer.view.states) == expected(settings, 3))
            await wait_for(lambda: set(b.peer.view.routable) == expected(settings, 3))
            status, body = await mgmt(b, "PUT", "/1/lb/nodes", {"node": "127.0.0.9:8080"})
            assert status == 409
            assert "Kubernetes owns the node list" in body["msg"]
            status, body = await mgmt(b, "DELETE", "/1/lb/nodes", {"node": IPS[0] + ":1"})
            assert status == 409
            server.put(pod("fn-1", IPS[1], ready=False))
            await wait_for(lambda: IPS[1] not in str(b.peer.view.routable))
            status, body = await mgmt(b, "GET", "/1/lb/nodes")
            assert set(body["nodes"]) == expected(settings, 3) - {
                f"{IPS[1]}:{settings['target_port']}"
            }


async def test_readiness_follows_the_pod_list_and_the_api_servers_answer(tmp_path: Path) -> None:
    async with cluster_api(tmp_path) as (server, settings):
        async with running_balancer(**settings) as b:
            assert (await mgmt(b, "GET", "/healthz"))[0] == 200
            await wait_for(lambda: b.readiness_problems() == ["no Fn nodes known"])
            status, body = await mgmt(b, "GET", "/readyz")
            assert status == 503
            assert "no Fn nodes known" in body["msg"]
            ready_pods(server, 1)
            await wait_for(lambda: not b.readiness_problems())
            assert await mgmt(b, "GET", "/readyz") == (200, {"status": "ready"})
            server.forbidden = True
            server.drop_watches()
            await wait_for(lambda: bool(b.readiness_problems()))
            status, body = await mgmt(b, "GET", "/readyz")
            assert status == 503
            assert "403" in body["msg"]
        assert b.readiness_problems() == ["shutting down"]


async def test_three_peers_watching_agree_on_the_node_set(tmp_path: Path) -> None:
    async with cluster_api(tmp_path) as (server, settings), peers(3, **settings) as bs:
        ready_pods(server, 4)
        want = expected(settings, 4)
        await wait_for(lambda: all(set(b.peer.view.routable) == want for b in bs), within=15)
        for b in bs:  # the gossiped set holds them too, so verdicts and load are shared
            assert b.cluster is not None
            assert set(b.peer.nodes()) == want
            assert not b.readiness_problems()
        server.delete("fn", "fn-0")
        server.put(pod("fn-2", IPS[2], terminating=True))
        want = expected(settings, 4) - {
            f"{IPS[0]}:{settings['target_port']}",
            f"{IPS[2]}:{settings['target_port']}",
        }
        await wait_for(lambda: all(set(b.peer.view.routable) == want for b in bs))
        await wait_for(lambda: all(set(b.peer.nodes()) == want for b in bs))
        status, _ = await mgmt(bs[1], "PUT", "/1/lb/nodes", {"node": "127.0.0.9:8080"})
        assert status == 409


async def test_a_sqlite_node_file_keeps_the_list_across_restarts(tmp_path: Path) -> None:
    db = f"sqlite3://{tmp_path}/lb/nodes.db"
    async with running_balancer(db=db, nodes="127.0.0.1:9") as b:
        assert (await mgmt(b, "PUT", "/1/lb/nodes", {"node": "127.0.0.1:10"}))[0] == 200
        assert (await mgmt(b, "PUT", "/1/lb/nodes", {"node": "127.0.0.1:11"}))[0] == 200
        assert (await mgmt(b, "DELETE", "/1/lb/nodes", {"node": "127.0.0.1:9"}))[0] == 200
    async with running_balancer(db=db) as b:
        _, body = await mgmt(b, "GET", "/1/lb/nodes")
        assert set(body["nodes"]) == {"127.0.0.1:10", "127.0.0.1:11"}
