"""fnlb peers failing under load: crash, hang, restart of one peer and of the whole cluster.

Three peers (fnlb1..3) gossip on their own hosts in front of three Fn node emulators; each
peer gets its own bounded load client, as each would behind a DNS name or a VIP. Each
scenario prints one summary line per load run and its convergence figures (`-s`).
"""

from __future__ import annotations

import time

import pytest
from harness import services
from harness.load import LoadResult, start_load
from harness.netns import Network
from harness.topologies import PeerCluster, fnlb_peers_with_fn_nodes

pytestmark = pytest.mark.cluster

PATHS = [f"/r/app/fn{i}?ms=20" for i in range(30)]
#: failure detection of the default gossip profile is a few seconds at N=3; slack for CI
DETECTION_BOUND = 20.0
REJOIN_BOUND = 20.0


def state_of(cluster: PeerCluster, observer_index: int, peer: str) -> str | None:
    states = services.peer_states(cluster.client, cluster.peers[observer_index].mgmt)
    return states.get(peer)


def wait_seen_as(
    cluster: PeerCluster, observers: list[int], peer: str, states: set[str], *, timeout: float
) -> float:
    return services.wait_until(
        f"{peer} seen as {sorted(states)} by peers {observers}",
        lambda: all(state_of(cluster, i, peer) in states for i in observers),
        timeout=timeout,
    )


def test_a_peer_killed_under_load_costs_the_other_peers_clients_nothing(
    network: Network,
) -> None:
    cluster = fnlb_peers_with_fn_nodes(network)
    victim = cluster.peers[0]
    loads = [
        start_load(
            cluster.client,
            p.traffic,
            PATHS,
            count=500,
            deadline=15,
            concurrency=4,
            name=f"load-{p.host.name}",
        )
        for p in cluster.peers
    ]
    for load in loads:
        load.wait_progress(60)
    kill_sent_at = time.monotonic()
    victim.proc.kill9()
    detected = wait_seen_as(cluster, [1, 2], victim.host.name, {"dead"}, timeout=DETECTION_BOUND)
    results = [load.result() for load in loads]
    for peer, result in zip(cluster.peers, results, strict=True):
        print(result.summary_line(f"peer-kill9 via {peer.host.name}", detection=detected))

    for result in results[1:]:
        assert not result.errors(), result.error_kinds()
    assert not [c for c in results[0].ended_before(kill_sent_at) if not c.ok]

    cluster.restart(0)
    rejoined = cluster.wait_all_alive(timeout=REJOIN_BOUND)
    print(f"SCENARIO peer-kill9 rejoin: rejoin={rejoined:.2f}s")
    assert all(nodes == set(cluster.node_ids) for nodes in cluster.node_lists())


def test_a_peer_frozen_for_3s_comes_back_without_a_restart(network: Network) -> None:
    cluster = fnlb_peers_with_fn_nodes(network)
    frozen = cluster.peers[2]
    loads = [
        start_load(
            cluster.client,
            p.traffic,
            PATHS,
            count=400,
            deadline=12,
            concurrency=4,
            name=f"load-{p.host.name}",
            timeout=10,
        )
        for p in cluster.peers
    ]
    for load in loads:
        load.wait_progress(60)
    frozen.proc.stop()
    stopped_at = time.monotonic()
    time.sleep(3.0)
    frozen.proc.cont()
    back = cluster.wait_all_alive(timeout=DETECTION_BOUND)
    results = [load.result() for load in loads]
    for peer, result in zip(cluster.peers, results, strict=True):
        print(result.summary_line(f"peer-sigstop-3s via {peer.host.name}", back=back))

    assert frozen.proc.alive()
    # Nobody's calls fail: the frozen peer's own clients only wait.
    for result in results:
        assert not result.errors(), result.error_kinds()
    assert results[2].in_flight_at(stopped_at + 1.0), "its clients should have been waiting"


def _load_everywhere(cluster: PeerCluster, count: int, deadline: float) -> list[LoadResult]:
    runs = [
        start_load(
            cluster.client,
            p.traffic,
            PATHS,
            count=count,
            deadline=deadline,
            concurrency=4,
            name=f"load-{p.host.name}-{time.monotonic_ns()}",
        )
        for p in cluster.peers
    ]
    return [run.result() for run in runs]


def test_the_whole_cluster_restarted_from_its_state_dirs_keeps_its_node_list(
    network: Network,
) -> None:
    cluster = fnlb_peers_with_fn_nodes(network, nodes_by_api=True)
    spare = network.add_host("n4")
    services.start_fnsim(spare)
    added = spare.addr(services.FNSIM_PORT)
    removed = cluster.node_ids[1]
    services.put_node(cluster.client, cluster.peers[0].mgmt, added)
    services.delete_node(cluster.client, cluster.peers[1].mgmt, removed)
    expected = {*cluster.node_ids, added} - {removed}
    cluster.wait_node_lists(expected, timeout=15)

    for peer in cluster.peers:
        peer.proc.kill9()
    for i in range(len(cluster.peers)):
        cluster.restart(i)
    rejoined = cluster.wait_all_alive(timeout=REJOIN_BOUND)
    lists = cluster.node_lists()
    routable = services.wait_until(
        "every peer routes to the kept node list",
        lambda: all(services.routable(cluster.client, p.mgmt) == expected for p in cluster.peers),
        timeout=15,
    )
    results = _load_everywhere(cluster, count=90, deadline=10)
    for peer, result in zip(cluster.peers, results, strict=True):
        print(
            result.summary_line(
                f"cluster-restart via {peer.host.name}", rejoin=rejoined, routable=routable
            )
        )
    assert all(nodes == expected for nodes in lists), lists
    for result in results:
        assert not result.errors(), result.error_kinds()
        assert removed not in result.by_node()


def test_a_rolling_restart_under_load_loses_no_call_in_flight(network: Network) -> None:
    cluster = fnlb_peers_with_fn_nodes(network, lb_flags={"shutdown-timeout": 10})
    slow_paths = [p.replace("ms=20", "ms=400") for p in PATHS]
    loads = [
        start_load(
            cluster.client, p.traffic, slow_paths, count=100_000, deadline=20, rate=10,
            concurrency=16, name=f"load-{p.host.name}",
        )
        for p in cluster.peers
    ]  # fmt: skip
    for load in loads:
        load.wait_progress(10)
    down: list[tuple[float, float]] = []  # per peer: SIGTERM sent, restarted and rejoined
    for i, peer in enumerate(list(cluster.peers)):
        term_at = time.monotonic()
        assert peer.proc.terminate(timeout=20) == 0, peer.proc.log_tail()
        cluster.restart(i)
        cluster.wait_all_alive(timeout=REJOIN_BOUND)
        down.append((term_at, time.monotonic()))
        time.sleep(1.0)
    results = [load.result() for load in loads]
    for peer, result, (term_at, back_at) in zip(cluster.peers, results, down, strict=True):
        print(result.summary_line(f"rolling-restart via {peer.host.name}", down=back_at - term_at))

    for result, (term_at, back_at) in zip(results, down, strict=True):
        in_flight = result.in_flight_at(term_at)
        assert in_flight, "the SIGTERM should have found calls in flight"
        assert all(c.ok for c in in_flight), result.error_kinds(in_flight)
        for call in result.errors():
            # only refused at connect, and only while its peer was down
            assert call.status is None, result.error_kinds()
            assert term_at <= call.start <= back_at, result.error_kinds()
