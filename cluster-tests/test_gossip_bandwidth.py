"""Gossip over a slow link: one peer's link limited for 25 s while every peer serves calls.

fnlb1's link is limited (tc tbf, both directions, `net.bandwidth`) while each peer's clients
call 5 times a second. Nothing about the cluster may break: no peer may be declared dead
(suspicions are counted and printed), a node change made on fnlb1 during the limit (its
`/hold` request and its gossip both cross the slow link) must be acknowledged and reach
every peer, and no client of any peer may see an error.

How much a peer's link carries here (measured on this harness with eth0's counters and
`/1/lb/gossip`'s `udp_bytes_sent`; 3 peers, 3 Fn nodes, 30 functions, no limit), while load
digests were gossip broadcasts relayed by every peer:

| calls/s per peer | health checks | gossip out (UDP) | whole link in | whole link out |
|---:|---|---:|---:|---:|
| 0 | every 1 s | 0.8 KB/s | 9.8 KB/s | 4.3 KB/s |
| 1 | every 1 s | 13 KB/s | 24 KB/s | 18 KB/s |
| 3 | every 1 s | 24 KB/s | 36 KB/s | 30 KB/s |
| 10 | every 1 s | 26 KB/s | 43 KB/s | 38 KB/s |
| 5 (this scenario) | every 3 s | 25 KB/s | 35 KB/s | 33 KB/s |

Now that each digest goes once to each live peer and is not relayed, this scenario's gossip
out is 4.9 KB/s and fnlb1's whole link 14-15 KB/s in, 12-13 KB/s out, under the limit
(printed by each run). A lone fnlb (no gossip) at 5 calls/s with 3 s checks uses 6.4 KB/s in,
5.1 KB/s out.

- **384 kbit/s** (48 KB/s): about 3.5 times what fnlb1's link carries.
- **128 kbit/s** (16 KB/s): just above it. Before the direct digests this failed (calls
  through fnlb1 took seconds and timed out, the other peers kept suspecting it); it must
  pass now. Calls through fnlb1 queue behind bursts on the link (p99 ~1 s) but none fails.

The health checks run at fnlb's defaults (every 3 s, offline after 2 failures, 5 s timeout),
not the harness's 1 s ones: on a slow link those would measure queueing, and this scenario
is about gossip.
"""

from __future__ import annotations

import time

import pytest
from harness import services
from harness.load import start_load
from harness.netns import Host, Network
from harness.nodechanges import NodeChangeLog
from harness.topologies import fnlb_peers_with_fn_nodes

pytestmark = pytest.mark.cluster

PATHS = [f"/r/app/fn{i}?ms=20" for i in range(30)]
LIMIT_S = 25.0
RATE = 5
CALL_TIMEOUT = 5.0
#: fnlb's own health-check defaults: what an operator on a slow link runs
SLOW_LINK_FLAGS = {"hc-interval": 3, "hc-unhealthy": 2, "hc-timeout": 5}
#: the node change is made this long into the limit, and must reach every peer before it ends
CHANGE_AT_S = 5.0


def link_bytes(host: Host) -> tuple[int, int]:
    """Bytes received and sent so far on `host`'s eth0."""
    stats = "/sys/class/net/eth0/statistics"
    rx, tx = host.exec("cat", f"{stats}/rx_bytes", f"{stats}/tx_bytes").split()
    return int(rx), int(tx)


def gossip_bytes_sent(observer: Host, mgmt: str) -> int:
    """UDP bytes the peer at `mgmt` has gossiped so far (`GET /1/lb/gossip`)."""
    reply = observer.http("GET", mgmt, "/1/lb/gossip", timeout=5.0)
    if reply.status != 200:
        raise RuntimeError(f"GET /1/lb/gossip on {mgmt}: HTTP {reply.status}")
    return int(reply.json()["traffic"]["udp_bytes_sent"])


@pytest.mark.parametrize(
    "kbit",
    [
        pytest.param(384, id="384kbit"),
        pytest.param(128, id="128kbit"),
    ],
)
def test_a_peer_on_a_slow_link_stays_in_the_cluster_and_serves_its_clients(
    network: Network, kbit: int
) -> None:
    cluster = fnlb_peers_with_fn_nodes(network, lb_flags=SLOW_LINK_FLAGS)
    slow = cluster.peers[0]
    spare = network.add_host("n4")
    services.start_fnsim(spare)
    added = spare.addr(services.FNSIM_PORT)
    loads = [
        start_load(
            cluster.client, p.traffic, PATHS, count=100_000, deadline=LIMIT_S + 3, rate=RATE,
            concurrency=16, timeout=CALL_TIMEOUT, name=f"load-{p.host.name}",
        )
        for p in cluster.peers
    ]  # fmt: skip
    for load in loads:
        load.wait_progress(10)

    log = NodeChangeLog(cluster.client)
    seen: dict[str, int] = {}
    wrong: list[str] = []
    spread: float | None = None
    gossip_before, counted_from = gossip_bytes_sent(cluster.client, slow.mgmt), time.monotonic()
    with network.bandwidth(slow.host, kbit):
        limited_at = time.monotonic()
        link_before = link_bytes(slow.host)
        while (now := time.monotonic()) < limited_at + LIMIT_S:
            if not log.changes and now >= limited_at + CHANGE_AT_S:
                log.add(slow.mgmt, added)
            for peer in cluster.peers:
                try:
                    states = services.peer_states(cluster.client, peer.mgmt)
                except (OSError, RuntimeError):
                    continue  # the API shares the slow link; a late answer is not a verdict
                for name, state in states.items():
                    seen[state] = seen.get(state, 0) + 1
                    if state in ("dead", "left"):
                        wrong.append(f"{peer.host.name} saw {name} {state}")
            if log.changes and spread is None:
                try:
                    if all(added in nodes for nodes in cluster.node_lists()):
                        spread = time.monotonic() - log.changes[0].at
                except (OSError, RuntimeError):
                    pass
            time.sleep(0.5)
        link_after = link_bytes(slow.host)
        limited_for = time.monotonic() - limited_at
    # read once the limit is lifted, so a slow answer cannot fail the scenario
    gossip_out = (gossip_bytes_sent(cluster.client, slow.mgmt) - gossip_before) / (
        time.monotonic() - counted_from
    )
    results = [load.result() for load in loads]
    link_in, link_out = (
        (b - a) / limited_for / 1000 for a, b in zip(link_before, link_after, strict=True)
    )
    for peer, result in zip(cluster.peers, results, strict=True):
        print(
            result.summary_line(
                f"gossip-{kbit}kbit-on-fnlb1 via {peer.host.name}",
                fnlb1_link_in=f"{link_in:.1f}KB/s",
                fnlb1_link_out=f"{link_out:.1f}KB/s",
                fnlb1_gossip_out=f"{gossip_out / 1000:.1f}KB/s",
                suspect_sightings=seen.get("suspect", 0),
                wrongly_dead=len(wrong),
                change=log.changes[0].detail if log.changes else "-",
                spread=spread if spread is not None else "never",
            )
        )

    assert not wrong, wrong[:10]
    assert log.acknowledged(), [(c.op, c.node, c.detail) for c in log.changes]
    assert spread is not None, "a change acknowledged on fnlb1 never reached every peer"
    for result in results:
        assert not result.errors(), result.error_kinds()
    cluster.wait_all_alive(timeout=10)
