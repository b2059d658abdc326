"""The simplest aiohttp pass-through proxy: fnlb's yardstick for "same framework, no routing".

One aiohttp server, one ClientSession with a keep-alive pool, uvloop; each call goes to the
node picked by a trivial hash of its path. Bodies are handled as fnlb handles them: up to
1 MiB read whole (the cheaper way for small calls), larger ones streamed. No health, no
retries, no bookkeeping: what fnlb adds on top of this is its overhead.

    python bench/aiohttp_passthrough.py PORT http://127.0.0.1:8001 http://127.0.0.1:8002
"""

from __future__ import annotations

import sys
import zlib

import aiohttp
from aiohttp import web

HOP_BY_HOP = frozenset(
    h.lower()
    for h in (
        "Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization", "TE",
        "Trailer", "Transfer-Encoding", "Upgrade", "Host",
    )
)  # fmt: skip
BUFFER_LIMIT = 1 << 20  # bodies up to 1 MiB are read whole (cheaper), as fnlb does
SESSION = web.AppKey("session", aiohttp.ClientSession)


def make_app(upstreams: list[str]) -> web.Application:
    async def open_session(app: web.Application) -> None:
        connector = aiohttp.TCPConnector(limit=0, keepalive_timeout=300)
        # No overall deadline, as fnlb has none: a timer per call would be extra work.
        timeout = aiohttp.ClientTimeout(total=None)
        app[SESSION] = aiohttp.ClientSession(
            connector=connector, timeout=timeout, auto_decompress=False
        )

    async def close_session(app: web.Application) -> None:
        await app[SESSION].close()

    async def forward(request: web.Request) -> web.StreamResponse:
        base = upstreams[zlib.crc32(request.raw_path.encode()) % len(upstreams)]
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
        body: bytes | aiohttp.StreamReader | None = None
        if request.body_exists:
            small = (request.content_length or BUFFER_LIMIT + 1) <= BUFFER_LIMIT
            body = await request.read() if small else request.content
        async with request.app[SESSION].request(
            request.method, base + request.raw_path, headers=headers, data=body,
            allow_redirects=False,
        ) as upstream:  # fmt: skip
            out_headers = {k: v for k, v in upstream.headers.items() if k.lower() not in HOP_BY_HOP}
            if (upstream.content_length or BUFFER_LIMIT + 1) <= BUFFER_LIMIT:
                out_headers.pop("Content-Length", None)
                return web.Response(
                    status=upstream.status, headers=out_headers, body=await upstream.read()
                )
            response = web.StreamResponse(status=upstream.status, headers=out_headers)
            await response.prepare(request)
            async for chunk in upstream.content.iter_any():
                await response.write(chunk)
            await response.write_eof()
            return response

    app = web.Application()
    app.on_startup.append(open_session)
    app.on_cleanup.append(close_session)
    app.router.add_route("*", "/{tail:.*}", forward)
    return app


def main(argv: list[str]) -> None:
    import uvloop

    port, upstreams = int(argv[0]), argv[1:]
    web.run_app(
        make_app(upstreams),
        host="127.0.0.1",
        port=port,
        access_log=None,
        print=None,
        loop=uvloop.new_event_loop(),
    )


if __name__ == "__main__":
    main(sys.argv[1:])
