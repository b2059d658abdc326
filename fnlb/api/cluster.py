"""`/1/lb/cluster`: what an operator needs to see that the peers agree, and the peers' hand-off.

`GET /1/lb/cluster` answers this peer's view: peers (state, incarnation, address), nodes (the
cluster verdict, whether this peer routes to it, each peer's verdict, the latest /metrics
reading), hot functions, the view's version and checksum (equal checksums on all peers: they
agree on members, nodes and health, what every routing reads), the settled load checksum
(load-based widths agree separately; docs/load-model.md), and the scale signal (desired Fn
nodes, out/in/hold; docs/routing.md). `POST /1/lb/cluster/hold` is how
a peer that took a node-list change asks another to hold it before answering its client.
Without cluster mode both answer 404 saying how to turn it on.
"""

from __future__ import annotations

from aiohttp import web

from fnlb.api.jsonio import json_error, json_response
from fnlb.cluster.feed import LoadFeed
from fnlb.cluster.service import ClusterService

NOT_CLUSTERED = "not in cluster mode: start fnlb with --join or --gossip-listen"


class ClusterApi:
    def __init__(self, cluster: ClusterService | None, feed: LoadFeed | None = None) -> None:
        self._cluster = cluster
        self._feed = feed

    def add_routes(self, app: web.Application) -> None:
        app.router.add_route("GET", "/1/lb/cluster", self.get_cluster)
        app.router.add_route("POST", "/1/lb/cluster/hold", self.hold)

    async def get_cluster(self, request: web.Request) -> web.Response:
        if self._cluster is None:
            return json_error(404, NOT_CLUSTERED)
        report = self._cluster.cluster_report()
        decision = self._feed.decision if self._feed is not None else None
        report["scale"] = decision.as_dict() if decision is not None else None
        return json_response(report)

    async def hold(self, request: web.Request) -> web.Response:
        if self._cluster is None:
            return json_error(404, NOT_CLUSTERED)
        return await self._cluster.handle_hold(request)
