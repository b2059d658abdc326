"""`GET /1/lb/dash`: a live dashboard page; `GET /1/lb/dash/data`: what it draws, as JSON.

The original's dashboard loaded jQuery and Highstock from public CDNs and drew nothing
without internet access. This page is one HTML file with its script and styles inline
(`dash.html`, a few KiB, hand-drawn SVG charts): no request leaves fnlb. It polls
`/1/lb/dash/data` every second and keeps the series in the browser, so fnlb keeps no history
for it and any number of dashboards cost one small JSON answer per second each.

The data: per node its state, calls/s and calls in flight from the load figures, and the
cumulative call count and latency histogram (the page turns the difference between two
polls into calls/s and p50/p99); the hot functions and the nodes they use; in cluster mode
the peers, each peer's verdict per node and whether every peer's verdicts match the
cluster's; the scale signal.
"""

from __future__ import annotations

import time
from importlib import resources
from typing import Any

from aiohttp import web

from fnlb import __version__
from fnlb.api.cluster import cluster_report, hot_functions
from fnlb.api.jsonio import json_response
from fnlb.observe.calls import CallTotals
from fnlb.peer.core import Peer
from fnlb.shell.cluster import ClusterService

HOT_FUNCTIONS = 10


class DashApi:
    def __init__(self, calls: CallTotals, peer: Peer, cluster: ClusterService | None) -> None:
        self._calls = calls
        self._peer = peer
        self._cluster = cluster
        self._page = resources.files("fnlb.observe").joinpath("dash.html").read_bytes()

    def add_routes(self, app: web.Application) -> None:
        app.router.add_route("GET", "/1/lb/dash", self.page)
        app.router.add_route("GET", "/1/lb/dash/data", self.data)

    async def page(self, request: web.Request) -> web.Response:
        return web.Response(
            body=self._page,
            content_type="text/html",
            charset="utf-8",
            headers={
                # the page may only talk to the fnlb that served it
                "Content-Security-Policy": "default-src 'none'; script-src 'unsafe-inline'; "
                "style-src 'unsafe-inline'; connect-src 'self'; img-src data:",
                "Cache-Control": "no-store",
            },
        )

    async def data(self, request: web.Request) -> web.Response:
        return json_response(self.snapshot(time.time()))

    def snapshot(self, now: float) -> dict[str, Any]:
        peer = self._peer
        view = peer.view
        obs = self._calls.merged(view.states)
        nodes: dict[str, Any] = {}
        for node in sorted(set(view.states) | set(obs.nodes)):
            share = peer.local.node_load(node, now)
            rec = obs.nodes.get(node)
            nodes[node] = {
                "state": view.states.get(node, "gone" if node != "none" else "-"),
                "rate": round(share.rate, 3),
                "in_flight": share.in_flight,
                "calls": sum(rec.calls) if rec is not None else 0,
                "latency": None
                if rec is None
                else {
                    "bounds": list(rec.duration.bounds),
                    "counts": list(rec.duration.counts),
                    "sum": rec.duration.sum,
                },
            }
        out: dict[str, Any] = {
            "version": __version__,
            "time": now,
            "self": None,
            "nodes": nodes,
            "hot": hot_functions(peer)[:HOT_FUNCTIONS],
            "peers": [],
            "verdicts": {},
            "agree": None,
            "scale": None,
        }
        decision = peer.decision
        if decision is not None:
            out["scale"] = decision.as_dict()
        cluster = self._cluster
        if cluster is not None and cluster.runtime is not None and cluster.runtime.started:
            report = cluster_report(peer, cluster)
            out["self"] = report["self"]
            out["checksum"] = report["checksum"]
            out["verdicts"] = {
                n["address"]: {"cluster": n["cluster"], **n["verdicts"]} for n in report["nodes"]
            }
            peers = []
            for p in report["peers"]:
                name = p["name"]
                differs = [
                    node
                    for node, v in out["verdicts"].items()
                    if name in v and v[name] != v["cluster"]
                ]
                peers.append({**p, "agrees": not differs, "differs_on": differs})
            out["peers"] = peers
            out["agree"] = all(p["agrees"] for p in peers)
        return out
