"""`/1/lb/cluster`: what an operator needs to see that the peers agree, and the peers' hand-off.

`GET /1/lb/cluster` answers this peer's view: peers (state, incarnation, address), nodes (the
cluster verdict, whether this peer routes to it, each peer's verdict, the latest /metrics
reading), hot functions, the view's version and checksum (equal checksums on all peers: they
agree on members, nodes and health, what every routing reads), the settled load checksum
(load-based widths agree separately; docs/routing.md, the shared load model), and the scale
signal (desired Fn nodes, out/in/hold; docs/routing.md). `POST /1/lb/cluster/hold` is how a
peer that took a node-list change asks another to hold it before answering its client.
Without cluster mode both answer 404 saying how to turn it on.
"""

from __future__ import annotations

import time
from typing import Any

from aiohttp import web

from fnlb.api.jsonio import json_error, json_response
from fnlb.cluster import hold_seal
from fnlb.errors import RemoteProtocolError
from fnlb.payloads.node_metrics import NodeMetrics
from fnlb.peer.core import Peer
from fnlb.shell.cluster import ClusterService

NOT_CLUSTERED = "not in cluster mode: start fnlb with --join or --gossip-listen"
REPORTED_HOT_FUNCTIONS = 10
"""How many of the busiest functions `/1/lb/cluster` lists."""
MAX_HOLD_BYTES = 1 << 20


def now_ms() -> int:
    return int(time.time() * 1000)


class ClusterApi:
    def __init__(self, peer: Peer, cluster: ClusterService | None) -> None:
        self._peer = peer
        self._cluster = cluster

    def add_routes(self, app: web.Application) -> None:
        app.router.add_route("GET", "/1/lb/cluster", self.get_cluster)
        app.router.add_route("POST", "/1/lb/cluster/hold", self.hold)

    async def get_cluster(self, request: web.Request) -> web.Response:
        if self._cluster is None:
            return json_error(404, NOT_CLUSTERED)
        report = cluster_report(self._peer, self._cluster)
        decision = self._peer.decision
        report["scale"] = decision.as_dict() if decision is not None else None
        # issue 16: the protected set, the tail's nodes, the placement's digest
        report["placement"] = self._peer.control.placement_report()
        return json_response(report)

    async def hold(self, request: web.Request) -> web.Response:
        """`POST /1/lb/cluster/hold`: a peer asks us to merge and persist its change.

        200 "held" only when every entry was applied (or was already outranked here, which
        holds it as well); 409 when the merge refused one (stamped too far in our future, or
        below our tombstone floor), so that the writer does not count us. With a gossip key,
        403 unless the body was sealed to this peer by a key holder, fresh and seen once, and
        a 200 carries `seal`, the proof the writer checks (fnlb.cluster.hold_seal).
        """
        if self._cluster is None:
            return json_error(404, NOT_CLUSTERED)
        # aiohttp's own reading: the whole body however it arrives, 413 past MAX_HOLD_BYTES
        try:
            data = await request.clone(client_max_size=MAX_HOLD_BYTES).read()
        except web.HTTPRequestEntityTooLarge:
            return json_error(413, f"a hold is at most {MAX_HOLD_BYTES} bytes")
        runtime = self._cluster.runtime
        if runtime is None:
            return json_error(503, "gossip is not running yet: try again shortly")
        try:
            sealed = hold_seal.open_request(runtime.cipher, data, time.time())
        except RemoteProtocolError as e:
            # issue #12: with a gossip key, only a key holder's change sealed to us is held
            drops = self._peer.drops
            drops["hold_" + e.reason] = drops.get("hold_" + e.reason, 0) + 1
            return json_error(403, f"not sealed for this peer with the cluster's key: {e}")
        try:
            held = self._peer.hold_change(sealed.payload, now_ms())
        except RemoteProtocolError as e:
            return json_error(400, f"not a node-set change: {e}")
        await self._cluster.save()  # even if nothing won here: what we hold may not be on disk
        if not held.held:
            return json_error(
                409,
                f"not held: {held.refused_drift} entries stamped more than "
                f"{held.max_drift_ms} ms ahead of this peer's clock, "
                f"{held.refused_ghosts} below its tombstone collection floor",
            )
        seal = hold_seal.seal_answer(runtime.cipher, sealed, time.time())
        return json_response({"msg": "held"} if seal is None else {"msg": "held", "seal": seal})


def cluster_report(peer: Peer, cluster: ClusterService) -> dict[str, Any]:
    """`GET /1/lb/cluster`: peers, nodes with every verdict, and the view's checksum."""
    state = peer.state
    return {
        "self": peer.name,
        "version": state.version,
        "checksum": state.checksum(),
        "load_checksum": state.load_checksum(now_ms()),
        "peers": [
            {
                "name": m.name,
                "address": f"{m.addr[0]}:{m.addr[1]}",
                "state": m.state.name.lower(),
                "incarnation": m.incarnation,
            }
            for m in cluster.members()
        ],
        "nodes": [
            {
                "address": r.address,
                "cluster": r.cluster,
                "routable_here": r.routable_here,
                "verdicts": {p: "online" if ok else "offline" for p, ok in r.verdicts.items()},
                "metrics": _metrics_report(state.node_metrics.get(r.address)),
            }
            for r in state.report()
        ],
        "hot_functions": hot_functions(peer),
        "drops": {**peer.drops, **state.refused},
    }


def hot_functions(peer: Peer) -> list[dict[str, Any]]:
    """The busiest functions cluster-wide: rate, in-flight and the nodes they use."""
    now = time.time()
    load = peer.load
    out = []
    for fn, rate in load.hot_functions(REPORTED_HOT_FUNCTIONS, now):
        f = load.function_load(fn, now)
        out.append(
            {
                "function": fn,
                "rate": round(rate, 2),
                "in_flight": f.in_flight,
                "nodes": sorted(f.nodes),
            }
        )
    return out


def _metrics_report(m: NodeMetrics | None) -> dict[str, Any] | None:
    if m is None:
        return None
    return {
        "queued": m.queued,
        "running": m.running,
        "mem_used": m.mem_used,
        "mem_avail": m.mem_avail,
        "busy": m.busy,
        "age_ms": max(0, now_ms() - m.at_ms),
    }
