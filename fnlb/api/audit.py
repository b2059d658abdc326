"""The audit trail of the management API: every node-list and key change, logged once.

Each attempt at a change that reaches this peer's API, allowed or not, becomes one record:

    {"time": "2026-12-06T12:00:00.123Z", "peer": "fnlb-1", "remote": "10.0.0.9",
     "token": "alice", "change": "node_add", "target": "fn3:8080", "status": 200}

`peer` is this fnlb (its gossip name, or `lone`); `remote` the client's address; `token` the
name of the token that authenticated it (`-` when none was presented or none is configured);
`change` one of `node_add`, `node_delete`, `key_install`, `key_use`, `key_remove`; `target` the
node address or the key's id (never the key), `-` when the request was refused before saying;
`status` the HTTP status answered. Records go to the `fnlb.audit` logger as the event
`mgmt_change` (one line, key=value fields), and the last `AUDIT_KEPT` to
`GET /1/lb/audit` (`{"events": [...]}`, oldest first; it needs a token when tokens are
configured). A change is logged by the peer that took it from the client; peers that merely
hold or gossip it do not log it again.
"""

from __future__ import annotations

import collections
import datetime
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Final

from aiohttp import web

from fnlb.api.auth import TOKEN_NAME_KEY
from fnlb.api.jsonio import json_response
from fnlb.errors import BadRequest

log = logging.getLogger("fnlb.audit")

EVENT: Final = "mgmt_change"
AUDIT_KEPT: Final = 1000
TARGET_KEY: Final = web.RequestKey("fnlb_audit_target", str)
CHANGES: Final = {
    ("PUT", "/1/lb/nodes"): "node_add",
    ("DELETE", "/1/lb/nodes"): "node_delete",
    ("PUT", "/1/lb/keys"): "key_install",
    ("POST", "/1/lb/keys/primary"): "key_use",
    ("DELETE", "/1/lb/keys"): "key_remove",
}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def note_target(request: web.Request, target: str) -> None:
    """Say what a change is about (a node address, a key id) for its audit record."""
    request[TARGET_KEY] = target


class AuditLog:
    """The middleware recording `CHANGES`, the bounded record list, and its route."""

    def __init__(self, peer: Callable[[], str]) -> None:
        self._peer = peer
        self.events: collections.deque[dict[str, Any]] = collections.deque(maxlen=AUDIT_KEPT)

    def add_routes(self, app: web.Application) -> None:
        app.router.add_route("GET", "/1/lb/audit", self.list_events)

    async def list_events(self, request: web.Request) -> web.Response:
        return json_response({"events": list(self.events)})

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        resource = request.match_info.route.resource
        change = CHANGES.get((request.method, resource.canonical if resource else ""))
        if change is None:
            return await handler(request)
        status = 500
        try:
            response = await handler(request)
            status = response.status
            return response
        except BadRequest as e:
            status = e.status
            raise
        except web.HTTPException as e:
            status = e.status
            raise
        finally:
            self.record(request, change, status)

    def record(self, request: web.Request, change: str, status: int) -> None:
        now = datetime.datetime.now(datetime.UTC)
        event = {
            "time": now.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "peer": self._peer(),
            "remote": request.remote or "-",
            "token": request.get(TOKEN_NAME_KEY, "-"),
            "change": change,
            "target": request.get(TARGET_KEY, "-"),
            "status": status,
        }
        self.events.append(event)
        log.info(EVENT, extra={"event": EVENT, **{k: v for k, v in event.items() if k != "time"}})
