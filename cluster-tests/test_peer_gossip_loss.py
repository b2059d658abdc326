"""20 % of gossip packets lost for 2 minutes: suspicion, yes; a wrong death, never.

Every packet to or from the gossip port (UDP probes and TCP push-pull alike) is dropped
with 20 % probability at its receiver, on every host, while clients keep calling all three
peers. SWIM with Lifeguard must ride this out: a peer may be suspected, but none may be
declared dead (or the cluster would drop a healthy peer's verdicts and load figures).
"""

from __future__ import annotations

import time

import pytest
from harness import services
from harness.load import start_load
from harness.netns import Network
from harness.topologies import fnlb_peers_with_fn_nodes

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

PATHS = [f"/r/app/fn{i}?ms=20" for i in range(30)]
LOSS_PCT = 20
LOSS_S = 120.0


def test_20pct_gossip_loss_for_2_minutes_declares_no_peer_dead(network: Network) -> None:
    cluster = fnlb_peers_with_fn_nodes(network)
    loads = [
        start_load(
            cluster.client, p.traffic, PATHS, count=100_000, deadline=LOSS_S, rate=5,
            concurrency=4, name=f"load-{p.host.name}",
        )
        for p in cluster.peers
    ]  # fmt: skip
    seen: dict[str, int] = {}
    wrong: list[str] = []
    polls = 0
    with network.loss_everywhere(LOSS_PCT, port=services.GOSSIP_PORT):
        end = time.monotonic() + LOSS_S
        while time.monotonic() < end:
            for peer in cluster.peers:
                try:
                    states = services.peer_states(cluster.client, peer.mgmt)
                except (OSError, RuntimeError):
                    continue  # the API is not gossip; a slow answer is not a verdict
                for name, state in states.items():
                    seen[state] = seen.get(state, 0) + 1
                    if state in ("dead", "left"):
                        wrong.append(f"{peer.host.name} saw {name} {state}")
            polls += 1
            time.sleep(0.5)
    results = [load.result() for load in loads]
    suspicions = seen.get("suspect", 0)
    for peer, result in zip(cluster.peers, results, strict=True):
        print(
            result.summary_line(
                f"gossip-loss-20pct-2min via {peer.host.name}",
                polls=polls,
                suspect_sightings=suspicions,
                wrongly_dead=len(wrong),
            )
        )

    assert not wrong, wrong[:10]
    cluster.wait_all_alive(timeout=10)
    for result in results:
        assert not result.errors(), result.error_kinds()
