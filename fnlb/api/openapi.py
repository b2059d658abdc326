"""The OpenAPI 3.1 description of the whole management API, served at `/1/lb/openapi.json`.

Written by hand, next to the handlers it describes, and checked against a running fnlb (lone
and cluster) by `tests/api/test_openapi_fuzz_functional.py`: schemathesis sends generated
requests to every operation and fails on any 5xx or any answer (status, content type, body)
the description does not allow. `docs/openapi.json` is a copy (`python -m fnlb.api.openapi`),
kept equal by tests/test_docs.py.

Security: `bearer` is the management token (fnlb/api/auth.py). Operations that list it need a
token once any token is configured; without tokens the API is open, as the original's was.
"""

from __future__ import annotations

import json
from typing import Any, Final

from aiohttp import web

from fnlb import __version__
from fnlb.api.jsonio import json_response

JSON: Final = "application/json"
_ERROR_REF: Final = {"$ref": "#/components/schemas/Error"}


def _error(why: str) -> dict[str, Any]:
    return {"description": why, "content": {JSON: {"schema": _ERROR_REF}}}


def _ok(schema_name: str, why: str = "success") -> dict[str, Any]:
    schema = {"$ref": f"#/components/schemas/{schema_name}"}
    return {"description": why, "content": {JSON: {"schema": schema}}}


_AUTH_ERRORS: Final = {
    "401": _error("no token, a malformed Authorization header, or an unknown token"),
    "403": _error("the token is known but its role does not allow this"),
}
_BODY_ERRORS: Final = {
    "400": _error("the body is not what the operation takes (the message says why)"),
    "413": _error("the body is larger than 64 KiB"),
}
_NOT_CLUSTERED: Final = _error("not in cluster mode (no -join or -gossip-listen)")
_SECURED: Final[list[dict[str, list[str]]]] = [
    {"bearer": []},
    {},
]  # a token, or none when none is configured


def _json_body(schema_name: str) -> dict[str, Any]:
    return {
        "required": True,
        "content": {JSON: {"schema": {"$ref": f"#/components/schemas/{schema_name}"}}},
    }


def _key_change(summary: str, extra: dict[str, Any]) -> dict[str, Any]:
    return {
        "summary": summary,
        "security": _SECURED,
        "requestBody": _json_body("KeyRequest"),
        "responses": {
            "200": _ok("KeyListing"),
            **_BODY_ERRORS,
            **_AUTH_ERRORS,
            "404": _error("not in cluster mode, gossip in plaintext, or the key is not installed"),
            **extra,
            "500": _error("the keyring file could not be written; the change is not applied"),
        },
    }


def _node_change(summary: str) -> dict[str, Any]:
    return {
        "summary": summary,
        "security": _SECURED,
        "requestBody": _json_body("NodeRequest"),
        "responses": {
            "200": _ok("NodeChange"),
            **_BODY_ERRORS,
            **_AUTH_ERRORS,
            "503": _error(
                "cluster mode: kept on this peer but fewer than -write-acks peers confirmed it; "
                "it spreads by gossip and retrying is safe"
            ),
        },
    }


_OBJECT: Final = {"type": "object"}

SCHEMAS: Final[dict[str, Any]] = {
    "Error": {"type": "object", "required": ["msg"], "properties": {"msg": {"type": "string"}}},
    "Probe": {
        "type": "object",
        "required": ["status"],
        "properties": {"status": {"enum": ["live", "ready"]}},
    },
    "NodeRequest": {
        "type": "object",
        "required": ["node"],
        "properties": {"node": {"type": "string", "examples": ["fn1:8080", "[::1]:8080"]}},
    },
    "NodeChange": {
        "type": "object",
        "required": ["msg"],
        "properties": {
            "msg": {"enum": ["node added", "node deleted"]},
            "held_by": {"type": "integer", "minimum": 1, "description": "cluster mode only"},
        },
    },
    "NodeList": {
        "type": "object",
        "required": ["nodes"],
        "properties": {
            "nodes": {"type": "object", "additionalProperties": {"enum": ["online", "offline"]}}
        },
    },
    "Stats": {
        "type": "object",
        "required": ["stats"],
        "properties": {"stats": {"type": "array", "items": _OBJECT}},
    },
    "ClusterReport": {
        "type": "object",
        "required": ["self", "peers", "nodes", "version", "checksum"],
        "properties": {
            "self": {"type": "string"},
            "peers": {"type": "array", "items": _OBJECT},
            "nodes": {"type": "array", "items": _OBJECT},
            "version": {"type": "integer"},
            "checksum": {"type": "string"},
            "scale": {"type": ["object", "null"]},
        },
    },
    "Held": {
        "type": "object",
        "required": ["msg"],
        "properties": {
            "msg": {"const": "held"},
            "seal": {
                "type": "string",
                "description": "with a gossip key: base64 of 'held' sealed to the request",
            },
        },
    },
    "Peers": {
        "type": "object",
        "required": ["self", "peers"],
        "properties": {
            "self": {"type": "string"},
            "peers": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["name", "address", "state", "incarnation"],
                    "properties": {
                        "name": {"type": "string"},
                        "address": {"type": "string"},
                        "state": {"enum": ["alive", "suspect", "dead", "left"]},
                        "incarnation": {"type": "integer", "minimum": 0},
                    },
                },
            },
        },
    },
    "GossipStats": {"type": "object", "required": ["self"]},
    "DashData": {
        "type": "object",
        "description": "what /1/lb/dash draws (fnlb/observe/dash.py, docs/observability.md)",
        "required": ["version", "time", "self", "nodes", "hot", "peers", "verdicts", "agree"],
        "properties": {
            "version": {"type": "string"},
            "time": {"type": "number"},
            "self": {"type": ["string", "null"], "description": "null: not in cluster mode"},
            "nodes": {
                "type": "object",
                "additionalProperties": {
                    "type": "object",
                    "required": ["state", "rate", "in_flight", "calls", "latency"],
                    "properties": {
                        "state": {"type": "string"},
                        "rate": {"type": "number"},
                        "in_flight": {"type": "integer"},
                        "calls": {"type": "integer"},
                        "latency": {"type": ["object", "null"]},
                    },
                },
            },
            "hot": {"type": "array", "items": _OBJECT},
            "peers": {"type": "array", "items": _OBJECT},
            "verdicts": _OBJECT,
            "agree": {"type": ["boolean", "null"]},
            "checksum": {"type": "string"},
            "scale": {"type": ["object", "null"]},
        },
    },
    "KeyRequest": {
        "type": "object",
        "required": ["key"],
        "properties": {"key": {"type": "string", "description": "base64 AES key (fnlb keygen)"}},
    },
    "KeyListing": {
        "type": "object",
        "required": ["keys", "persisted"],
        "properties": {
            "keys": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["id", "primary"],
                    "properties": {
                        "id": {"type": "string", "pattern": "^[0-9a-f]{12}$"},
                        "primary": {"type": "boolean"},
                    },
                },
            },
            "persisted": {"type": "boolean"},
        },
    },
    "Audit": {
        "type": "object",
        "required": ["events"],
        "properties": {
            "events": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["time", "peer", "remote", "token", "change", "target", "status"],
                    "properties": {
                        "time": {"type": "string"},
                        "peer": {"type": "string"},
                        "remote": {"type": "string"},
                        "token": {"type": "string"},
                        "change": {
                            "enum": [
                                "node_add",
                                "node_delete",
                                "key_install",
                                "key_use",
                                "key_remove",
                            ]
                        },
                        "target": {"type": "string"},
                        "status": {"type": "integer"},
                    },
                },
            }
        },
    },
}

PATHS: Final[dict[str, Any]] = {
    "/1/lb/nodes": {
        "get": {"summary": "the Fn nodes and their state", "responses": {"200": _ok("NodeList")}},
        "put": _node_change("add a node (in cluster mode, for every peer)"),
        "delete": _node_change("delete a node"),
    },
    "/1/lb/stats": {
        "get": {
            "summary": "per-second call roll-ups of the last minute",
            "responses": {"200": _ok("Stats")},
        },
    },
    "/1/lb/cluster": {
        "get": {
            "summary": "this peer's view: peers, nodes, verdicts, checksums, scale signal",
            "responses": {"200": _ok("ClusterReport"), "404": _NOT_CLUSTERED},
        }
    },
    "/1/lb/cluster/hold": {
        "post": {
            "summary": "peer to peer: hold a node-list change (not for operators)",
            "requestBody": {
                "required": True,
                "content": {
                    "application/msgpack": {
                        "schema": {
                            "description": '["n", [entry, ...]]: node-set entries, as gossiped '
                            "(accepted only without a gossip key)",
                            "type": "array",
                            "prefixItems": [{"const": "n"}, {"type": "array"}],
                        }
                    },
                    "application/x-fnlb-sealed": {
                        "schema": {
                            "description": "with a gossip key: that msgpack sealed with the "
                            "keyring to this peer's name (docs/security.md, the hold)",
                            "type": "string",
                            "format": "binary",
                        }
                    },
                },
            },
            "responses": {
                "200": _ok("Held"),
                "4XX": _error(
                    "not held: not sealed for this peer (403), too large (413), not "
                    "a node-set change (400), an entry refused (409)"
                ),
                "503": _error("gossip is not running yet"),
            },
        }
    },
    "/1/lb/peers": {
        "get": {
            "summary": "the cluster's members as this peer sees them",
            "responses": {
                "200": _ok("Peers"),
                "404": _NOT_CLUSTERED,
                "503": _error("gossip is starting or stopping"),
            },
        }
    },
    "/1/lb/gossip": {
        "get": {
            "summary": "gossip counters: traffic, drops by reason, awareness, live members",
            "responses": {
                "200": _ok("GossipStats"),
                "404": _NOT_CLUSTERED,
                "503": _error("gossip is starting or stopping"),
            },
        }
    },
    "/1/lb/keys": {
        "get": {
            "summary": "installed gossip key ids, primary first",
            "security": _SECURED,
            "responses": {
                "200": _ok("KeyListing"),
                **_AUTH_ERRORS,
                "404": _error("not in cluster mode, or gossip in plaintext"),
            },
        },
        "put": _key_change("install a key (idempotent)", {}),
        "delete": _key_change(
            "remove a key", {"409": _error("the key is the primary: use another first")}
        ),
    },
    "/1/lb/keys/primary": {"post": _key_change("seal with this installed key", {})},
    "/1/lb/audit": {
        "get": {
            "summary": "the last node-list and key change attempts on this peer, oldest first",
            "security": _SECURED,
            "responses": {"200": _ok("Audit"), **_AUTH_ERRORS},
        }
    },
    "/1/lb/openapi.json": {
        "get": {
            "summary": "this description",
            "responses": {
                "200": {"description": "OpenAPI 3.1", "content": {JSON: {"schema": _OBJECT}}}
            },
        }
    },
    "/healthz": {
        "get": {
            "summary": "liveness: the process answers",
            "responses": {"200": _ok("Probe", "alive")},
        }
    },
    "/readyz": {
        "get": {
            "summary": "readiness: listening, nodes known, node source in step, joined (cluster)",
            "responses": {
                "200": _ok("Probe", "ready for calls"),
                "503": _error("not ready; the message names every reason"),
            },
        }
    },
    "/1/lb/dash": {
        "get": {
            "summary": "the live dashboard: one self-contained HTML page (no request leaves fnlb)",
            "responses": {
                "200": {
                    "description": "the page",
                    "content": {"text/html": {"schema": {"type": "string"}}},
                }
            },
        }
    },
    "/1/lb/dash/data": {
        "get": {
            "summary": "what the dashboard draws: nodes, calls, latency, hot functions, peers",
            "responses": {"200": _ok("DashData")},
        }
    },
    "/metrics": {
        "get": {
            "summary": "Prometheus metrics",
            "responses": {
                "200": {
                    "description": "text exposition format",
                    "content": {"text/plain": {"schema": {"type": "string"}}},
                }
            },
        }
    },
}

DESCRIPTION: Final[dict[str, Any]] = {
    "openapi": "3.1.0",
    "info": {
        "title": "fnlb management API",
        "version": __version__,
        "description": 'docs/api.md; errors are {"msg": "..."}; docs/security.md for tokens',
    },
    "paths": PATHS,
    "components": {
        "schemas": SCHEMAS,
        "securitySchemes": {
            "bearer": {
                "type": "http",
                "scheme": "bearer",
                "description": "a management token (-mgmt-tokens-file, FNLB_MGMT_TOKEN)",
            }
        },
    },
}


def as_json() -> str:
    return json.dumps(DESCRIPTION, indent=1) + "\n"


async def serve_description(request: web.Request) -> web.Response:
    return json_response(DESCRIPTION)


def add_routes(app: web.Application) -> None:
    app.router.add_route("GET", "/1/lb/openapi.json", serve_description)


if __name__ == "__main__":
    print(as_json(), end="")
