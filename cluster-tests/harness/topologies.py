"""Ready-made test clusters, so a scenario starts in one line and is about its fault.

`fn_nodes_behind_one_fnlb`: a client Host, one fnlb Host and N Fn node emulators, each on its
own Host; optionally every fnlb -> node path goes through a toxiproxy on a Host of its own
(one proxy per node, named after the node's Host), so TCP toxics can hit one node's path.

    client ──> lb (fnlb serve) ──> [toxi: proxy n1 | n2 | n3] ──> n1, n2, n3 (fnsim)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from harness import services
from harness.netns import Host, Network
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
