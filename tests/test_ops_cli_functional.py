"""`fnlb nodes` and `fnlb cluster status` against live peers, and their errors."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys

from testkit.peers import peers
from tests.support_proc import free_port


async def fnlb(*args: str) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "fnlb", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


async def test_nodes_and_cluster_status_against_three_peers() -> None:
    async with peers(3) as group:
        urls = [f"http://{b.mgmt_address}" for b in group]
        added = await fnlb("nodes", "add", "127.0.0.1:1", "127.0.0.1:2", "--mgmt", urls[0])
        assert added.returncode == 0, added.stderr
        assert "127.0.0.1:1: node added (held by 2 peers)" in added.stdout
        listed = await fnlb("nodes", "ls", "--mgmt", urls[1])
        assert "127.0.0.1:2" in listed.stdout
        for _ in range(100):
            status = await fnlb("cluster", "status", *(a for u in urls for a in ("--mgmt", u)))
            if status.returncode == 0:
                break
            await asyncio.sleep(0.2)
        assert status.returncode == 0, status.stdout + status.stderr
        assert "all peers agree" in status.stdout
        for name in ("p0", "p1", "p2"):
            assert name in status.stdout
        as_json = await fnlb("cluster", "status", "--json", "--mgmt", urls[2])
        assert json.loads(as_json.stdout)["agree"] is True
        removed = await fnlb("nodes", "rm", "127.0.0.1:1", "--mgmt", urls[2])
        assert removed.returncode == 0


async def test_unreachable_peer_and_bad_arguments_are_clear_errors() -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    result = await fnlb("cluster", "status", "--mgmt", dead)
    assert result.returncode == 1
    assert "cannot reach the peer" in result.stderr
    result = await fnlb("nodes", "ls", "--mgmt", dead)
    assert result.returncode == 1
    assert "cannot reach the peer" in result.stderr
    result = await fnlb("nodes", "add", "not-a-node")
    assert result.returncode == 2
    assert "host:port" in result.stderr
    result = await fnlb("nodes", "add")
    assert result.returncode == 2


async def test_cluster_status_does_not_claim_agreement_it_could_not_check() -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    async with peers(1) as (one,):
        live = f"http://{one.mgmt_address}"
        result = await fnlb("cluster", "status", "--mgmt", live, "--mgmt", dead)
    assert result.returncode == 1
    assert "all peers agree" not in result.stdout
    assert "1 of 2 peers answered; agreement not confirmed" in result.stdout
    assert "cannot reach the peer" in result.stderr


async def test_cluster_status_reports_peers_whose_views_differ() -> None:
    # Two separate clusters of one, holding different node lists: their views differ.
    async with peers(1, nodes="127.0.0.1:1") as (a,), peers(1, nodes="127.0.0.1:2") as (b,):
        urls = [f"http://{a.mgmt_address}", f"http://{b.mgmt_address}"]
        result = await fnlb("cluster", "status", *(x for u in urls for x in ("--mgmt", u)))
    assert result.returncode == 1
    assert "PEERS DISAGREE" in result.stdout
    assert "all peers agree" not in result.stdout


async def test_verbs_tables_and_json_as_operators_expect() -> None:
    async with peers(1, nodes="127.0.0.1:1", write_acks=0) as (one,):  # a cluster of one
        url = f"http://{one.mgmt_address}"
        table = await fnlb("nodes", "list", "--mgmt", url)  # list: an alias of ls
        assert table.returncode == 0, table.stderr
        header, row = table.stdout.splitlines()
        assert header.split() == ["node", "state"]
        assert row.split()[0] == "127.0.0.1:1"
        as_json = await fnlb("nodes", "ls", "--json", "--mgmt", url)
        assert json.loads(as_json.stdout)["nodes"].keys() == {"127.0.0.1:1"}
        removed = await fnlb("nodes", "remove", "127.0.0.1:1", "--mgmt", url)
        assert removed.returncode == 0, removed.stderr
        empty = await fnlb("nodes", "ls", "--json", "--mgmt", url)
        assert json.loads(empty.stdout) == {"nodes": {}}


async def test_cluster_status_watch_repeats_count_times() -> None:
    async with peers(1) as (one,):
        url = f"http://{one.mgmt_address}"
        watched = await fnlb("cluster", "status", "--watch", "0.1", "--count", "3", "--mgmt", url)
        as_json = await fnlb(
            "cluster", "status", "--watch=0.1", "--count=2", "--json", "--mgmt", url
        )
    assert watched.returncode == 0, watched.stderr
    assert watched.stdout.count("agreement:") == 3
    objects = [json.loads(part) for part in as_json.stdout.strip().split("\n\n")]
    assert [o["agree"] for o in objects] == [True, True]
    bad = await fnlb("cluster", "status", "--watch", "0", "--mgmt", url)
    assert bad.returncode == 2
    assert "--watch" in bad.stderr


async def test_cluster_status_against_a_lone_fnlb_says_so() -> None:
    from tests.support import running_balancer

    async with running_balancer() as lb:
        url = f"http://{lb.mgmt_address}"
        result = await fnlb("cluster", "status", "--mgmt", url)
        as_json = await fnlb("cluster", "status", "--json", "--mgmt", url)
    assert result.returncode == 1
    assert "not in cluster mode" in result.stdout
    assert "no peer answered" not in result.stdout + result.stderr
    assert json.loads(as_json.stdout)["clustered"] is False
