"""JSON answers as the original fnlb wrote them: compact, with a trailing newline."""

from __future__ import annotations

import json
from typing import Any, Final

from aiohttp import web

from fnlb.errors import BadRequest

MAX_BODY: Final = 64 * 1024
"""Largest management API request body, in bytes (a node address or a key fits many times)."""


async def read_json_body(request: web.Request) -> object:
    """The request's JSON body, or BadRequest: 413 beyond MAX_BODY, 400 when not JSON.

    aiohttp reads the body (every TCP segment of it, chunked or not) and enforces the limit
    (`client_max_size` of a clone: the application has none, because on a shared port, the
    original's default, it also carries function calls, whose bodies have no such limit).
    Nesting deeper than Python's recursion limit is a 400 like any other bad JSON.
    """
    if request.content_length is not None and request.content_length > MAX_BODY:
        raise _too_large()
    try:
        raw = await request.clone(client_max_size=MAX_BODY).read()
    except web.HTTPRequestEntityTooLarge:
        raise _too_large() from None
    try:
        body: object = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as e:
        raise BadRequest(f"invalid JSON: {e}") from None
    except RecursionError:
        raise BadRequest("invalid JSON: nested too deeply") from None
    return body


def _too_large() -> BadRequest:
    return BadRequest(f"body is larger than {MAX_BODY} bytes", status=413)


def json_response(
    value: Any, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    body = json.dumps(value, separators=(",", ":")).encode() + b"\n"
    return web.Response(status=status, body=body, content_type="application/json", headers=headers)


def json_error(status: int, msg: str, headers: dict[str, str] | None = None) -> web.Response:
    """An error answer in the original fnlb's shape: `{"msg":"..."}`."""
    return json_response({"msg": msg}, status, headers)
