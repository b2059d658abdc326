"""Talking to a running peer's management API from the command line (`fnlb keys|nodes|cluster`).

One request, one JSON answer, or a `PeerError` whose message names the URL and says what went
wrong in words an operator can act on (unreachable, refused with the peer's own `msg`, or an
answer that is not what the command expected).
"""

from __future__ import annotations

from typing import Any

import aiohttp


class PeerError(Exception):
    """One peer refused or could not be reached; the message says which and why, `status`
    the HTTP status of a refusal (None when no answer came)."""

    def __init__(self, message: str, status: int | None = None, msg: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.msg = msg


def base_url(mgmt: str) -> str:
    """`host:port` or a URL -> a URL without a trailing slash."""
    mgmt = mgmt.strip().rstrip("/")
    return mgmt if "://" in mgmt else f"http://{mgmt}"


async def call(
    session: aiohttp.ClientSession, method: str, mgmt: str, path: str, body: Any = None
) -> dict[str, Any]:
    """`method` `path` on the peer at `mgmt`; its JSON object answer or PeerError."""
    url = base_url(mgmt) + path
    try:
        async with session.request(method, url, json=body) as resp:
            try:
                answer: Any = await resp.json(content_type=None)
            except ValueError:
                answer = None
            if resp.status >= 300:
                msg = answer.get("msg") if isinstance(answer, dict) else None
                raise PeerError(
                    f"{url}: HTTP {resp.status}: {msg or resp.reason or 'refused'}",
                    resp.status,
                    msg,
                )
    except (aiohttp.ClientError, TimeoutError, ValueError) as e:
        detail = str(e) or type(e).__name__
        raise PeerError(f"{url}: cannot reach the peer: {detail}") from None
    if not isinstance(answer, dict):
        raise PeerError(f"{url}: unexpected answer (not a JSON object): {answer!r:.200}")
    return answer
