"""An fnlb stopped and started under load: the single-peer base of a rolling restart.

A rolling restart of a cluster is this, peer after peer, with the others taking the calls;
until the peers gossip, the one-fnlb part is what can be shown: SIGTERM lets every call in
flight finish (within -shutdown-timeout) before the process exits, and the same command
started again serves at once.
"""

from __future__ import annotations

import time

import pytest
from harness import services
from harness.load import start_load
from harness.netns import Network
from harness.topologies import fn_nodes_behind_one_fnlb

pytestmark = pytest.mark.cluster

#: calls long enough that a SIGTERM surely finds some of them in flight
SLOW_PATHS = [f"/r/app/fn{i}?ms=1500" for i in range(30)]


def test_sigterm_lets_every_call_in_flight_finish_and_a_restart_serves_again(
    network: Network,
) -> None:
    cluster = fn_nodes_behind_one_fnlb(network, lb_flags={"shutdown-timeout": 10})
    load = start_load(
        cluster.client,
        cluster.lb.traffic,
        SLOW_PATHS,
        count=200,
        deadline=6,
        concurrency=16,
        timeout=12,
    )
    load.wait_progress(16)  # the first wave is done; the second is in flight
    time.sleep(0.3)
    term_at = time.monotonic()
    exit_code = cluster.lb.proc.terminate(timeout=20)
    drained = time.monotonic() - term_at
    result = load.result()
    print(result.summary_line("fnlb-sigterm-drain", drain=drained))

    assert exit_code == 0, cluster.lb.proc.log_tail()
    in_flight = result.in_flight_at(term_at)
    assert len(in_flight) >= 8, "the SIGTERM should have found calls in flight"
    assert all(c.ok for c in in_flight), result.error_kinds(in_flight)
    # After the SIGTERM, new calls are refused (the port is closed), never half-served.
    for call in result.started_after(term_at):
        assert call.ok or (call.status is None and call.error is not None)

    lb = services.restart_fnlb(cluster.lb)
    cluster.lb = lb
    cluster.wait_routable(set(cluster.routes), timeout=15)
    again = start_load(
        cluster.client,
        lb.traffic,
        [p.replace("1500", "20") for p in SLOW_PATHS],
        count=60,
        deadline=10,
        name="after-restart",
    )
    after = again.result()
    print(after.summary_line("fnlb-after-restart"))
    assert not after.errors(), after.error_kinds()
