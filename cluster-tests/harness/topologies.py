"""Ready-made test clusters, so a scenario starts in one line and is about its fault.

`fn_nodes_behind_one_fnlb`: a client Host, one fnlb Host and N Fn node emulators, each on its
own Host; optionally every fnlb -> node path goes through a toxiproxy on a Host of its own
(one proxy per node, named after the node's Host), so TCP toxics can hit one node's path.

    client ──> lb (fnlb serve) ──> [toxi: proxy n1 | n2 | n3] ──> n1, n2, n3 (fnsim)

`fnlb_peers_with_fn_nodes`: the same with M fnlb peers (fnlb1..fnlbM) gossiping with each
other (shared key, a state dir each), every peer given the same starting node list.

    client ──> fnlb1, fnlb2, fnlb3 (gossip on :8946 among them) ──> n1, n2, n3 (fnsim)
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from harness import services
from harness.load import LoadRun, start_load
from harness.netns import Host, Network
from harness.nodechanges import Promise
from harness.procs import Process
from harness.toxiproxy_client import ToxiproxyClient

PROXY_BASE_PORT = 18080


@dataclass
class FnCluster:
    """What a scenario drives: where to send calls, what to break, what to ask."""

    net: Network
    client: Host
    lb: services.Fnlb
    node_hosts: list[Host]
    fnsims: list[Process]
    #: what fnlb was told: node address or, behind toxiproxy, the proxy's address
    routes: list[str]
    #: what answers name themselves (Fnsim-Node): the emulator's own address
    node_ids: list[str]
    toxiproxy: ToxiproxyClient | None = None
    proxy_names: list[str] = field(default_factory=list)

    def route_of(self, node_host: Host) -> str:
        return self.routes[self.node_hosts.index(node_host)]

    def node_id_of(self, node_host: Host) -> str:
        return self.node_ids[self.node_hosts.index(node_host)]

    def routable(self) -> set[str]:
        return services.routable(self.client, self.lb.mgmt)

    def wait_routable(self, expected: set[str], *, timeout: float) -> float:
        return services.wait_routable(self.client, self.lb.mgmt, expected, timeout=timeout)


def fn_nodes_behind_one_fnlb(
    net: Network,
    *,
    nodes: int = 3,
    via_toxiproxy: bool = False,
    lb_flags: Mapping[str, object] | None = None,
    fnsim_flags: tuple[str, ...] = (),
) -> FnCluster:
    """Start the cluster above and wait until fnlb routes to every node."""
    client, lb_host = net.add_hosts("client", "lb")
    node_hosts = net.add_hosts(*(f"n{i + 1}" for i in range(nodes)))
    fnsims = [services.start_fnsim(h, flags=fnsim_flags) for h in node_hosts]
    node_ids = [h.addr(services.FNSIM_PORT) for h in node_hosts]
    routes = list(node_ids)
    toxi: ToxiproxyClient | None = None
    names: list[str] = []
    if via_toxiproxy:
        toxi_host = net.add_host("toxi")
        _, toxi = services.start_toxiproxy(toxi_host, client)
        routes = []
        for i, (host, node_id) in enumerate(zip(node_hosts, node_ids, strict=True)):
            proxy = toxi.create_proxy(host.name, toxi_host.addr(PROXY_BASE_PORT + i), node_id)
            routes.append(proxy.listen)
            names.append(host.name)
    lb = services.start_fnlb(lb_host, routes, flags=lb_flags)
    cluster = FnCluster(net, client, lb, node_hosts, fnsims, routes, node_ids, toxi, names)
    cluster.wait_routable(set(routes), timeout=15)
    return cluster


@dataclass
class PeerCluster:
    """fnlb peers in one gossip cluster in front of Fn node emulators."""

    net: Network
    client: Host
    peers: list[services.Fnlb]
    node_hosts: list[Host]
    fnsims: list[Process]
    node_ids: list[str]
    key: str

    def peer_names(self) -> set[str]:
        return {p.host.name for p in self.peers}

    def wait_all_alive(self, *, timeout: float, among: Sequence[int] | None = None) -> float:
        """Wait until each peer of `among` (indexes; default all) lists all of them alive."""
        chosen = [self.peers[i] for i in (range(len(self.peers)) if among is None else among)]
        names = {p.host.name for p in chosen}

        def settled() -> bool:
            for peer in chosen:
                states = services.peer_states(self.client, peer.mgmt)
                if any(states.get(name) != "alive" for name in names):
                    return False
            return True

        return services.wait_until(f"peers {sorted(names)} alive", settled, timeout=timeout)

    def node_lists(self) -> list[set[str]]:
        """Each peer's node list (online or not), in peer order."""
        return [set(services.node_states(self.client, p.mgmt)) for p in self.peers]

    def wait_node_lists(self, expected: set[str], *, timeout: float) -> float:
        """Wait until every peer's node list is exactly `expected`; the seconds it took."""
        return services.wait_until(
            f"every peer's node list == {sorted(expected)}",
            lambda: all(nodes == expected for nodes in self.node_lists()),
            timeout=timeout,
        )

    def wait_converged_keeping(self, promise: Promise, *, timeout: float) -> set[str]:
        """Wait until every peer has the same node list and it keeps `promise`; that list.

        TimeoutError names how the last lists broke it.
        """
        last: list[set[str]] = []

        def converged() -> bool:
            last[:] = self.node_lists()
            return len({frozenset(n) for n in last}) == 1 and not promise.broken_by(last[0])

        try:
            services.wait_until("node lists converge on the promise", converged, timeout=timeout)
        except TimeoutError as e:
            detail = [
                f"fnlb{i + 1}: {sorted(n)} {promise.broken_by(n)}" for i, n in enumerate(last)
            ]
            raise TimeoutError(f"{e}: " + "; ".join(detail)) from None
        return last[0]

    def rejoin_and_converge(
        self, promise: Promise, *, timeout: float
    ) -> tuple[float, set[str], float]:
        """Right after a heal: the seconds until every peer lists all alive again, the node
        list they then agree on (keeping `promise`), and the seconds until that agreement."""
        healed_at = time.monotonic()
        rejoined = self.wait_all_alive(timeout=timeout)
        final = self.wait_converged_keeping(promise, timeout=timeout)
        return rejoined, final, time.monotonic() - healed_at

    def load_every_peer(
        self, paths: Sequence[str], *, deadline: float, rate: float, concurrency: int = 4
    ) -> list[LoadRun]:
        """One paced load client per peer, through its traffic port, until `deadline` s;
        started once each has 20 calls answered, so the cluster is serving before a fault."""
        loads = [
            start_load(
                self.client, p.traffic, paths, count=100_000, deadline=deadline, rate=rate,
                concurrency=concurrency, name=f"load-{p.host.name}",
            )
            for p in self.peers
        ]  # fmt: skip
        for load in loads:
            load.wait_progress(20)
        return loads

    def restart(self, index: int) -> services.Fnlb:
        """Start peer `index` again with its command line and state dir (after kill/stop)."""
        self.peers[index] = services.restart_fnlb(self.peers[index])
        return self.peers[index]


def fnlb_peers_with_fn_nodes(
    net: Network,
    *,
    peers: int = 3,
    nodes: int = 3,
    lb_flags: Mapping[str, object] | None = None,
    join_timeout: float = 30.0,
    nodes_by_api: bool = False,
) -> PeerCluster:
    """Start the peer cluster above and wait until every peer lists every peer alive.

    The Fn nodes are given to every peer with `-nodes`, or, with `nodes_by_api`, added
    through fnlb1's API once the peers have joined (so that nothing on the command lines
    refills the node list when a peer restarts from its state dir).
    """
    client = net.add_host("client")
    peer_hosts = net.add_hosts(*(f"fnlb{i + 1}" for i in range(peers)))
    node_hosts = net.add_hosts(*(f"n{i + 1}" for i in range(nodes)))
    fnsims = [services.start_fnsim(h) for h in node_hosts]
    node_ids = [h.addr(services.FNSIM_PORT) for h in node_hosts]
    key = services.new_gossip_key()
    started = []
    for host in peer_hosts:
        flags = services.peer_flags(host, peer_hosts, key)
        flags.update(lb_flags or {})
        seed = [] if nodes_by_api else node_ids
        started.append(services.start_fnlb(host, seed, flags=flags, name="fnlb"))
    cluster = PeerCluster(net, client, started, node_hosts, fnsims, node_ids, key)
    cluster.wait_all_alive(timeout=join_timeout)
    if nodes_by_api:
        for node in node_ids:
            services.put_node(client, started[0].mgmt, node)
        cluster.wait_node_lists(set(node_ids), timeout=join_timeout)
    return cluster
