"""JSON answers as the original fnlb wrote them: compact, with a trailing newline."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web


def json_response(
    value: Any, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    body = json.dumps(value, separators=(",", ":")).encode() + b"\n"
    return web.Response(status=status, body=body, content_type="application/json", headers=headers)


def json_error(status: int, msg: str, headers: dict[str, str] | None = None) -> web.Response:
    """An error answer in the original fnlb's shape: `{"msg":"..."}`."""
    return json_response({"msg": msg}, status, headers)
