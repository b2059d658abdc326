"""The management API of the original fnlb: `/1/lb/nodes` and `/1/lb/stats`.

Shapes are byte-compatible with the original (compact JSON and a trailing newline, as Go's
json.Encoder wrote them): `PUT`/`DELETE /1/lb/nodes` with `{"node": "host:port"}` answer
`{"msg":"node added"}` / `{"msg":"node deleted"}`; `GET /1/lb/nodes` answers
`{"nodes":{"host:port":"online"|"offline"}}` (a node whose first check is pending shows as
offline, as before); `GET /1/lb/stats` answers `{"stats":[...]}` without draining it.
Bad input gets 400 and `{"msg": "..."}` saying what is wrong.
"""

from __future__ import annotations

import time
from typing import Any

from aiohttp import web

from fnlb.api.audit import note_target
from fnlb.api.jsonio import json_error, json_response, read_json_body
from fnlb.api.stats import CallStats
from fnlb.config import parse_node_address
from fnlb.discovery.source import InMemory, NodeSource
from fnlb.errors import BadRequest
from fnlb.peer.core import NodeChange, Peer
from fnlb.shell.cluster import ClusterService, NotHeld


async def read_node(request: web.Request) -> str:
    """The validated `node` of a PUT/DELETE body, or BadRequest saying what is wrong."""
    body = await read_json_body(request)
    if not isinstance(body, dict):
        raise BadRequest('body must be a JSON object like {"node": "host:port"}')
    node = body.get("node")
    if node is None:
        raise BadRequest('missing "node": send {"node": "host:port"}')
    if not isinstance(node, str):
        raise BadRequest('"node" must be a string "host:port"')
    try:
        parse_node_address(node)
    except ValueError as e:
        raise BadRequest(str(e)) from None
    return node


def now_ms() -> int:
    return int(time.time() * 1000)


class NodesApi:
    """The routes above over a `Peer`; in cluster mode a change is kept by the cluster shell
    (persisted and held by `-write-acks` peers) before it is answered."""

    def __init__(
        self,
        peer: Peer,
        cluster: ClusterService | None,
        stats: CallStats,
        source: NodeSource | None = None,
    ) -> None:
        self._peer = peer
        self._cluster = cluster
        self._stats = stats
        self._source = source or InMemory()

    def add_routes(self, app: web.Application) -> None:
        app.router.add_route("PUT", "/1/lb/nodes", self.put_node)
        app.router.add_route("DELETE", "/1/lb/nodes", self.delete_node)
        app.router.add_route("GET", "/1/lb/nodes", self.list_nodes)
        app.router.add_route("*", "/1/lb/nodes", self.wrong_method)
        app.router.add_route("GET", "/1/lb/stats", self.get_stats)

    async def put_node(self, request: web.Request) -> web.Response:
        node = await read_node(request)
        note_target(request, node)
        self._refuse_when_owned("added")
        return await self._kept(self._peer.put_node(node, now_ms()), "node added")

    async def delete_node(self, request: web.Request) -> web.Response:
        node = await read_node(request)
        note_target(request, node)
        self._refuse_when_owned("deleted")
        return await self._kept(self._peer.delete_node(node, now_ms()), "node deleted")

    def _refuse_when_owned(self, what: str) -> None:
        owner = self._source.owner
        if owner:
            raise BadRequest(
                f"nodes cannot be {what} through the API with -db=k8s: Kubernetes owns the "
                f"node list ({owner}); scale or relabel the Fn pods instead",
                status=409,
            )

    async def _kept(self, change: NodeChange, msg: str) -> web.Response:
        await self._source.keep(change)  # -db=sqlite3:///file: on disk before the answer
        if self._cluster is None:
            return json_response({"msg": msg})  # a lone fnlb: the original's answer
        try:
            held = await self._cluster.keep(change)
        except NotHeld as e:
            return json_error(
                503,
                f"not acknowledged: kept on this peer, but only {e.confirmed} of the "
                f"{e.wanted} other peers -write-acks asks for confirmed holding it ({e.live} "
                "live); it will still spread by gossip; retrying is safe "
                "(-write-acks-degraded answers 200 with fewer)",
            )
        return json_response({"msg": msg, "held_by": held})

    async def list_nodes(self, request: web.Request) -> web.Response:
        states = self._peer.view.states
        nodes = {n: "online" if s == "online" else "offline" for n, s in states.items()}
        return json_response({"nodes": nodes})

    async def get_stats(self, request: web.Request) -> web.Response:
        return json_response({"stats": self._stats.snapshot(time.time())})

    async def wrong_method(self, request: web.Request) -> web.Response:
        return json_error(
            405, f"{request.method} is not allowed on /1/lb/nodes: use GET, PUT, DELETE"
        )


@web.middleware
async def bad_request_as_json(request: web.Request, handler: Any) -> web.StreamResponse:
    """Turn BadRequest into 4xx `{"msg"}`; aiohttp's own 404/405 pages into the same shape."""
    try:
        response: web.StreamResponse = await handler(request)
        return response
    except BadRequest as e:
        return json_error(e.status, e.msg)


async def unknown_command(request: web.Request) -> web.Response:
    return json_error(404, "unknown command")
