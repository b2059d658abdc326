"""A split brain: fnlb1 cut off from fnlb2 and fnlb3 for 30 s, node changes on both sides.

Both sides keep serving their clients (the Fn nodes and the clients are reachable from
both: only the peers are cut from each other), both take node changes, and after the heal
every peer converges on one node list holding every change. fnlb1, alone, has no other peer
to hold its changes (`-write-acks 1`): it answers 503, "not acknowledged", and keeps them all
the same; fnlb2 holds fnlb3's and the other way round (issue #11: a minority used to answer
200 with one copy).
"""

from __future__ import annotations

import time

import pytest
from harness import services
from harness.netns import Network
from harness.nodechanges import NodeChangeLog
from harness.topologies import fnlb_peers_with_fn_nodes

pytestmark = pytest.mark.cluster

PATHS = [f"/r/app/fn{i}?ms=20" for i in range(30)]
PARTITION_S = 30.0
#: long enough for each side to declare the other dead (a few seconds), with slack
SIDES_SETTLE_BOUND = 20.0
HEAL_CONVERGENCE_BOUND = 30.0


def test_a_30s_partition_with_changes_on_both_sides_heals_into_one_node_list(
    network: Network,
) -> None:
    cluster = fnlb_peers_with_fn_nodes(network)
    a, b, c = cluster.peers
    spares = network.add_hosts("n4", "n5")
    for host in spares:
        services.start_fnsim(host)
    n4, n5 = (h.addr(services.FNSIM_PORT) for h in spares)
    n1, n2, _ = cluster.node_ids
    loads = cluster.load_every_peer(PATHS, deadline=PARTITION_S + 5, rate=15)

    log = NodeChangeLog(cluster.client)
    with network.partition([a.host], [b.host, c.host]):
        cut_at = time.monotonic()
        services.wait_until(
            "each side sees the other dead",
            lambda: all(
                services.peer_states(cluster.client, mine.mgmt).get(theirs.host.name) == "dead"
                for mine, theirs in ((a, b), (a, c), (b, a), (c, a))
            ),
            timeout=SIDES_SETTLE_BOUND,
        )
        log.add(a.mgmt, n4)
        log.delete(a.mgmt, n2)
        log.add(b.mgmt, n5)
        log.delete(c.mgmt, n1)
        services.wait_until(
            "fnlb2 and fnlb3 agree",
            lambda: len({frozenset(n) for n in cluster.node_lists()[1:]}) == 1,
            timeout=15,
        )
        time.sleep(max(0.0, cut_at + PARTITION_S - time.monotonic()))
    rejoined, final, converged = cluster.rejoin_and_converge(
        log.promise(cluster.node_ids), timeout=HEAL_CONVERGENCE_BOUND
    )
    results = [load.result() for load in loads]
    for peer, result in zip(cluster.peers, results, strict=True):
        print(
            result.summary_line(
                f"partition-30s via {peer.host.name}",
                acked=f"{len(log.acknowledged())}/{len(log.changes)}",
                rejoin=rejoined,
                convergence=converged,
            )
        )

    assert not log.conflicts()
    assert not log.promise(cluster.node_ids).broken_by(final)
    refused = [(c.via, c.detail) for c in log.changes if not c.acknowledged]
    assert refused == [(a.mgmt, "HTTP 503")] * 2, refused
    assert final == {*cluster.node_ids, n4, n5} - {n1, n2}  # fnlb1's kept changes spread too
    for result in results:
        assert not result.errors(), result.error_kinds()
