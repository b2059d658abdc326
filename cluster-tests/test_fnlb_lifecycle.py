"""An fnlb stopped and started under load: the single-peer base of a rolling restart.

A rolling restart of a cluster is this, peer after peer, with the others taking the calls;
until the peers gossip, the one-fnlb part is what can be shown: SIGTERM lets every call in
flight finish (within -shutdown-timeout) before the process exits, and the same command
started again serves at once.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

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


def _workers(pid: int) -> set[int]:
    return {int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()}


def test_sighup_replaces_the_workers_under_load_and_no_call_fails(network: Network) -> None:
    """A graceful reload (docs/proxy.md): the new workers listen before the old ones stop
    accepting and finish their calls; calls in flight and calls arriving during it all
    succeed, and the old workers exit."""
    cluster = fn_nodes_behind_one_fnlb(network, lb_flags={"workers": 2})
    pid = cluster.lb.proc.pid
    old = _workers(pid)
    assert len(old) == 2, cluster.lb.proc.log_tail()
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
    hup_at = time.monotonic()
    os.kill(pid, signal.SIGHUP)
    result = load.result()
    print(result.summary_line("fnlb-sighup-reload"))

    in_flight = result.in_flight_at(hup_at)
    assert len(in_flight) >= 8, "the SIGHUP should have found calls in flight"
    assert not result.errors(), result.error_kinds()  # in flight, or begun during the reload
    assert len(result.started_after(hup_at)) >= 8, "calls should have begun during the reload"
    deadline = time.monotonic() + 20
    while (_workers(pid) & old or len(_workers(pid)) != 2) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _workers(pid) & old, "the old workers should have exited"
    assert len(_workers(pid)) == 2
    assert cluster.lb.proc.alive()
