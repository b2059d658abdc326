"""Which function a request calls: the key that routing hashes.

`/r/{app}/{route...}` -> `r/{app}/{route}` (legacy routes), `/invoke/{fn_id}` -> `{fn_id}`,
`/t/{app}/{trigger...}` -> `t/{app}/{trigger}` (HTTP triggers); any other path is its own key.
The query string is not part of the key (aiohttp hands us the path without it), so `?x=1` and
`?x=2` of one function land on the same hot node.
"""

from __future__ import annotations


def function_key(path: str) -> str:
    """The routing key of a request path (without its query string)."""
    if path.startswith("/r/") or path.startswith("/t/"):
        return path[1:].rstrip("/") or path
    if path.startswith("/invoke/"):
        fn_id = path[8:].strip("/")
        return fn_id or path
    return path
