"""Management API of cluster mode: `/1/lb/peers`, `/1/lb/gossip` and `/1/lb/keys`.

    GET    /1/lb/peers          -> {"self": NAME, "peers": [{"name", "address", "state",
                                    "incarnation"}, ...]}
    GET    /1/lb/gossip         -> counters: traffic on the wire, drops by reason, Lifeguard's
                                    awareness score, the live-member count (for operators and
                                    bench/gossip.py)
    GET    /1/lb/keys           -> LISTING
    PUT    /1/lb/keys           {"key": "<base64>"} -> LISTING   install (idempotent)
    POST   /1/lb/keys/primary   {"key": "<base64>"} -> LISTING   use as primary (404 if absent)
    DELETE /1/lb/keys           {"key": "<base64>"} -> LISTING   remove (404 absent, 409 primary)
    LISTING = {"keys": [{"id": "3f9a0c21d4e5", "primary": true}, ...], "persisted": BOOL}

`peers` lists every member this peer knows of, itself included (so every peer of a healthy
three-peer cluster lists the same three names), sorted by name; `state` is alive, suspect,
dead or left, and dead and left members stay listed until the member forgets them
(profile.dead_retention). `address` is the gossip address `host:port` a peer advertises.

Without cluster mode every route answers 404 `{"msg": "gossip is not enabled: ..."}`; the
keys routes answer 404 on a peer gossiping in plaintext (--gossip-insecure), as
`fnlb keys` (fnlb/cli/keys.py) expects. Keys never appear in an answer, only their ids.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Final

from aiohttp import web

from fnlb.api.audit import note_target
from fnlb.api.jsonio import json_error, json_response, read_json_body
from fnlb.errors import BadRequest
from fnlb.gossip.crypto import Keyring, key_id
from fnlb.gossip.keyring_file import (
    install_key,
    key_from_request,
    keys_listing,
    remove_key,
    use_key,
)
from fnlb.gossip.runtime import GossipRuntime

GOSSIP_OFF: Final = "gossip is not enabled: start fnlb with --join or --gossip-listen"
NOT_RUNNING: Final = "gossip is not running yet (or any more): try again shortly"
NO_KEYS: Final = (
    "gossip runs without encryption on this peer (--gossip-insecure): there are no keys; "
    "restart it with --gossip-key or --gossip-keyring-file to encrypt"
)

Handler = Callable[[web.Request], Awaitable[web.Response]]
KeyChange = Callable[[Keyring, str, bytes], dict[str, Any]]


def _addr(addr: tuple[str, int]) -> str:
    host, port = addr
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class GossipApi:
    """The routes above, over a running `GossipRuntime` (or None when not in cluster mode)."""

    def __init__(self, runtime: GossipRuntime | None) -> None:
        self._runtime = runtime

    def add_routes(self, app: web.Application) -> None:
        app.router.add_route("GET", "/1/lb/peers", self.list_peers)
        app.router.add_route("GET", "/1/lb/gossip", self.gossip_stats)
        app.router.add_route("GET", "/1/lb/keys", self._keys(None))
        app.router.add_route("PUT", "/1/lb/keys", self._keys(install_key))
        app.router.add_route("DELETE", "/1/lb/keys", self._keys(remove_key))
        app.router.add_route("POST", "/1/lb/keys/primary", self._keys(use_key))

    async def list_peers(self, request: web.Request) -> web.Response:
        rt = self._runtime
        if rt is None:
            return json_error(404, GOSSIP_OFF)
        if not rt.started:
            return json_error(503, NOT_RUNNING)
        peers = [
            {
                "name": m.name,
                "address": _addr(m.addr),
                "state": m.state.name.lower(),
                "incarnation": m.incarnation,
            }
            for m in sorted(rt.members(), key=lambda m: m.name)
        ]
        return json_response({"self": rt.name, "peers": peers})

    async def gossip_stats(self, request: web.Request) -> web.Response:
        rt = self._runtime
        if rt is None:
            return json_error(404, GOSSIP_OFF)
        if not rt.started:
            return json_error(503, NOT_RUNNING)
        return json_response({"self": rt.name, **rt.stats()})

    def _keys(self, change: KeyChange | None) -> Handler:
        async def handler(request: web.Request) -> web.Response:
            rt = self._runtime
            if rt is None:
                return json_error(404, GOSSIP_OFF)
            if rt.keyring is None:
                return json_error(404, NO_KEYS)
            try:
                if change is None:
                    return json_response(keys_listing(rt.keyring, persisted=bool(rt.keyring_file)))
                key = key_from_request(await read_json_body(request))
                note_target(request, key_id(key))
                return json_response(change(rt.keyring, rt.keyring_file, key))
            except BadRequest as e:
                return json_error(e.status, e.msg)

        return handler
