"""An Fn node that one peer cannot reach: that peer routes around it, the others keep it.

The path between fnlb1 and n2 is cut both ways; fnlb2 and fnlb3 still reach n2, and
everything else reaches everything. docs/cluster.md's health rule says what must follow:
fnlb1's own verdict is "offline" and it stops routing to n2 (local exclusion), but the
cluster verdict stays "online" (one offline vote of three is no majority), so fnlb2 and
fnlb3 keep sending n2 its calls. One peer's network trouble costs it a detour, not the
cluster a node. After the heal fnlb1 uses n2 again.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from harness import services
from harness.load import Call, start_load
from harness.netns import Host, Network
from harness.topologies import PeerCluster, fnlb_peers_with_fn_nodes

pytestmark = pytest.mark.cluster

PATHS = [f"/r/app/fn{i}?ms=20" for i in range(30)]
#: health checks as the harness sets them: every 1 s, offline after 1 failure, 1 s timeout;
#: a node leaves a peer's routable set within that window plus slack for a shared machine
HC_WINDOW = 1.0 + 1.0 + 3.0
CUT_S = 8.0
#: how long each client calls: ~2 s before the cut, the cut, ~1-2 s to see n2 again, and
#: a few seconds of fnlb1 using n2 again
LOAD_S = 18.0
CALL_TIMEOUT = 5.0


def cluster_nodes(observer: Host, mgmt: str) -> dict[str, dict[str, Any]]:
    """`GET /1/lb/cluster`'s nodes, by address: cluster verdict, routable_here, verdicts."""
    reply = observer.http("GET", mgmt, "/1/lb/cluster", timeout=3.0)
    if reply.status != 200:
        raise RuntimeError(f"GET /1/lb/cluster on {mgmt}: HTTP {reply.status}")
    return {str(n["address"]): n for n in reply.json()["nodes"]}


def split_verdict_seen(cluster: PeerCluster, node: str, deaf: str) -> bool:
    """True when every peer reports `node` online for the cluster, offline for `deaf` only,
    and routable everywhere but on `deaf`."""
    for peer in cluster.peers:
        report = cluster_nodes(cluster.client, peer.mgmt).get(node)
        if report is None or report["cluster"] != "online":
            return False
        verdicts = report["verdicts"]
        expected = {p: ("offline" if p == deaf else "online") for p in cluster.peer_names()}
        if verdicts != expected or report["routable_here"] != (peer.host.name != deaf):
            return False
    return True


def test_an_fn_node_cut_from_one_peer_is_avoided_by_that_peer_alone(
    network: Network,
) -> None:
    cluster = fnlb_peers_with_fn_nodes(network)
    a, b, c = cluster.peers
    victim = cluster.node_hosts[1]
    node = cluster.node_ids[1]
    everyone = set(cluster.node_ids)
    loads = [
        start_load(
            cluster.client, p.traffic, PATHS, count=100_000, deadline=LOAD_S, rate=20,
            concurrency=32, timeout=CALL_TIMEOUT, name=f"load-{p.host.name}",
        )
        for p in cluster.peers
    ]  # fmt: skip
    for load in loads:
        load.wait_progress(40)

    dropped_by_others: list[str] = []  # polls where fnlb2 or fnlb3 did not route to n2
    cut_at = time.monotonic()  # before: the rules land on the hosts one after another
    with network.partition([a.host], [victim]):
        excluded = services.wait_routable(
            cluster.client, a.mgmt, everyone - {node}, timeout=HC_WINDOW
        )
        excluded_at = time.monotonic()
        views = services.wait_until(
            "every peer reports n2: online for the cluster, offline for fnlb1 only",
            lambda: split_verdict_seen(cluster, node, a.host.name),
            timeout=HC_WINDOW,
        )
        while time.monotonic() < cut_at + CUT_S:
            for peer in (b, c):
                if node not in services.routable(cluster.client, peer.mgmt):
                    dropped_by_others.append(
                        f"{peer.host.name} at +{time.monotonic() - cut_at:.1f}s"
                    )
            time.sleep(0.2)
        assert split_verdict_seen(cluster, node, a.host.name)
        healed_at = time.monotonic()
    back = services.wait_routable(cluster.client, a.mgmt, everyone, timeout=HC_WINDOW)
    back_at = time.monotonic()
    results = [load.result() for load in loads]
    for peer, result in zip(cluster.peers, results, strict=True):
        print(
            result.summary_line(
                f"fn-node-cut-from-one-peer via {peer.host.name}",
                excluded=excluded,
                views=views,
                back=back,
                caught=len(result.errors()),
            )
        )

    assert results[0].calls[-1].start > back_at + 2.0, "load should run well past the heal"
    assert not dropped_by_others, dropped_by_others

    def during(calls: list[Call]) -> list[Call]:
        return [c for c in calls if c.end < healed_at]

    # fnlb1's clients: once fnlb1's own verdict says offline, its calls go elsewhere and
    # all succeed. Before that, a new connection to n2 fails after -connect-timeout and
    # the call moves to the next node (slow, not failed). Only a call fnlb1 sent n2 on a
    # pooled keep-alive connection (in flight at the cut, or sent on it before the check
    # failed; one per run here) can fail, and only by the client's timeout: the cut eats
    # the answer, and fnlb never resends a call that may have started.
    mine = results[0]
    after_exclusion = during(mine.started_after(excluded_at))
    assert after_exclusion, "fnlb1's clients should have called during the cut"
    assert not [x for x in after_exclusion if not x.ok], mine.error_kinds(after_exclusion)
    assert not [x for x in after_exclusion if x.node == node]
    for call in mine.errors():
        assert call.end >= cut_at, f"failed before the cut: {call}"
        assert call.start < excluded_at, f"started after fnlb1 excluded n2: {call}"
        assert call.error is not None, call
        assert call.error.startswith("TimeoutError"), call
    # ... and once healed, fnlb1 uses n2 again.
    assert mine.by_node(mine.started_after(back_at + 0.5))[node] > 0

    # fnlb2's and fnlb3's clients saw nothing: their peers kept calling n2 all along.
    for result in results[1:]:
        assert not result.errors(), result.error_kinds()
        assert result.by_node(during(result.started_after(excluded_at)))[node] > 0
