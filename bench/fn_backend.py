"""Emulated Fn nodes in one aiohttp + uvloop process: the backend when nginx is not installed.

Slower than nginx (it is Python), so the benchmark prefers nginx; each port answers like
an Fn server: `/version` with `{"version": ...}`, anything else with 200, a small JSON body,
`Fn-Call-Id` and `X-Bench-Node`.

    python bench/fn_backend.py PORT [PORT ...]
"""

from __future__ import annotations

import asyncio
import itertools
import sys

from aiohttp import web

FN_VERSION = "0.3.750"  # keep equal to bench._configs.FN_VERSION (this file runs standalone)
_call_ids = itertools.count(1)


def make_app(node: str) -> web.Application:
    async def version(request: web.Request) -> web.Response:
        return web.json_response({"version": FN_VERSION})

    async def call(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(
            body=b'{"message":"Hello World"}\n',
            content_type="application/json",
            headers={"Fn-Call-Id": f"{next(_call_ids):032x}", "X-Bench-Node": node},
        )

    app = web.Application()
    app.router.add_get("/version", version)
    app.router.add_route("*", "/{tail:.*}", call)
    return app


async def serve(ports: list[int]) -> None:
    runners = []
    for i, port in enumerate(ports, start=1):
        runner = web.AppRunner(make_app(f"n{i}"), access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        runners.append(runner)
    try:
        await asyncio.Event().wait()
    finally:
        for runner in runners:
            await runner.cleanup()


def main(argv: list[str]) -> None:
    import uvloop

    uvloop.run(serve([int(p) for p in argv]))


if __name__ == "__main__":
    main(sys.argv[1:])
