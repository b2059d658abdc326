"""Ten fnlb peers split 3 | 7 while the 7 lose an Fn node: how soon do verdicts agree after
the heal? (Issue #11: push-pull carried only each sender's own verdicts, so the 3 learned the
majority's "offline" in minutes; now the first exchanges across the heal settle it.)

Timing is printed (a SCENARIO line), not asserted beyond a generous bound: the machine is
shared. The virtual-time figures are in docs/benchmarks.md, "Agreement".
"""

from __future__ import annotations

import time

import pytest
from harness import services
from harness.netns import Host, Network
from harness.topologies import fnlb_peers_with_fn_nodes

pytestmark = pytest.mark.cluster

#: generous: two push-pull intervals (30 s) plus failure detection and slack for CI
AGREEMENT_BOUND = 45.0


def cluster_view(observer: Host, mgmt: str) -> tuple[str, dict[str, str]]:
    """A peer's checksum and cluster verdict per node (`GET /1/lb/cluster`)."""
    reply = observer.http("GET", mgmt, "/1/lb/cluster", timeout=3.0)
    if reply.status != 200:
        raise RuntimeError(f"GET /1/lb/cluster on {mgmt}: HTTP {reply.status}")
    body = reply.json()
    return str(body["checksum"]), {str(n["address"]): str(n["cluster"]) for n in body["nodes"]}


def test_ten_peers_split_three_seven_agree_on_verdicts_soon_after_the_heal(
    network: Network,
) -> None:
    cluster = fnlb_peers_with_fn_nodes(network, peers=10, nodes=2, join_timeout=60.0)
    client = cluster.client
    minority, majority = cluster.peers[:3], cluster.peers[3:]
    x_host, x = cluster.node_hosts[0], cluster.node_ids[0]

    def views(group: list[services.Fnlb]) -> list[tuple[str, dict[str, str]]]:
        return [cluster_view(client, p.mgmt) for p in group]

    with network.partition([p.host for p in majority], [x_host]):
        with network.partition([p.host for p in minority], [p.host for p in majority]):
            services.wait_until(
                "each side sees its own verdict on x",
                lambda: (
                    all(v[1][x] == "offline" for v in views(majority))
                    and all(v[1][x] == "online" for v in views(minority))
                ),
                timeout=30,
            )
            time.sleep(5)
        took = services.wait_until(
            "every peer agrees: x offline, one checksum",
            lambda: (
                len({v[0] for v in views(cluster.peers)}) == 1
                and all(v[1][x] == "offline" for v in views(cluster.peers))
            ),
            timeout=AGREEMENT_BOUND,
            interval=0.2,
        )
    print(f"SCENARIO partition-3|7-verdicts: peers=10 agreement_after_heal={took:.2f}s")
