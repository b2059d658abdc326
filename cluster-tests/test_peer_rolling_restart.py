"""A rolling restart of every fnlb peer under calls and node changes: first without state
(each peer's state dir wiped, so it comes back from its stale `-nodes`), then with it.

Issue #11: a node deleted through the API must stay deleted (a stateless peer's `-nodes`
seeds lose to the tombstone), every acknowledged change must be in the final list, and no
call may fail except on the peer being restarted (in flight when it was killed, or sent to it
while it was down).
"""

from __future__ import annotations

import shutil
import time

import pytest
from harness import services
from harness.netns import Network
from harness.nodechanges import NodeChangeLog
from harness.topologies import fnlb_peers_with_fn_nodes

pytestmark = pytest.mark.cluster

PATHS = [f"/r/app/fn{i}?ms=20" for i in range(30)]
PEERS = 3


def test_a_rolling_restart_of_every_peer_loses_and_resurrects_nothing(network: Network) -> None:
    cluster = fnlb_peers_with_fn_nodes(network, peers=PEERS)
    spares = network.add_hosts("n4", "n5")
    for host in spares:
        services.start_fnsim(host)
    n4, n5 = (h.addr(services.FNSIM_PORT) for h in spares)
    n1 = cluster.node_ids[0]
    log = NodeChangeLog(cluster.client)
    assert log.delete(cluster.peers[0].mgmt, n1)  # on every peer's -nodes: must stay deleted
    cluster.wait_node_lists(set(cluster.node_ids) - {n1}, timeout=15)
    loads = cluster.load_every_peer(PATHS, deadline=120, rate=10)
    down: list[tuple[int, float, float]] = []  # (peer, killed at, serving again at)
    changes = iter([(n4, True), (n5, True), (n4, False), (n5, False), (n4, True), (n5, True)])
    for stateless in (True, False):
        for i in range(PEERS):
            peer = cluster.peers[i]
            killed = time.monotonic()  # before the signal: calls fail as it lands
            peer.proc.kill9()
            if stateless:
                state_dir = network.workdir / f"state-{peer.host.name}"
                shutil.rmtree(state_dir)
                state_dir.mkdir()
            traffic = cluster.restart(i).traffic  # answers on its management port

            def takes_calls(t: str = traffic) -> bool:
                return cluster.client.http("GET", t, "/", timeout=2.0).status > 0

            services.wait_until("the restarted peer takes calls", takes_calls, timeout=15)
            down.append((i, killed, time.monotonic()))
            cluster.wait_all_alive(timeout=30)
            node, add = next(changes)
            other = cluster.peers[(i + 1) % PEERS].mgmt
            log.add(other, node) if add else log.delete(other, node)
    final = cluster.wait_converged_keeping(log.promise(cluster.node_ids), timeout=30)
    time.sleep(2)
    results = [load.result() for load in loads]
    for peer, result in zip(cluster.peers, results, strict=True):
        print(result.summary_line(f"rolling-restart via {peer.host.name}"))

    assert n1 not in final
    assert final == log.expected(cluster.node_ids)
    for i, result in enumerate(results):
        spans = [(k, r) for p, k, r in down if p == i]
        unexplained = [
            c for c in result.errors() if not any(c.start <= r and c.end >= k for k, r in spans)
        ]
        assert not unexplained, (i, spans, unexplained[:3])
