"""`/healthz` and `/readyz` on the management port: what Kubernetes' probes ask.

- `GET /healthz` (liveness): 200 while the event loop answers at all. It checks nothing else
  on purpose: a liveness failure restarts the container, which cures a hung process but not an
  unreachable API server or an empty node list.
- `GET /readyz` (readiness): 200 once fnlb serves calls, knows at least one node, its node
  source is in step (the Kubernetes pod list received and not refused), and in a cluster it has
  joined the gossip; else 503 with `{"msg": ...}` naming every reason. From SIGTERM on it
  answers 503 ("shutting down") before anything else stops, so Kubernetes takes the pod out of
  its Services while in-flight calls drain.
"""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web

from fnlb.api.jsonio import json_error, json_response

Problems = Callable[[], list[str]]
"""Why this process is not ready now; empty when it is."""


class ProbesApi:
    def __init__(self, problems: Problems) -> None:
        self._problems = problems

    def add_routes(self, app: web.Application) -> None:
        app.router.add_route("GET", "/healthz", self.live)
        app.router.add_route("GET", "/readyz", self.ready)

    async def live(self, request: web.Request) -> web.Response:
        return json_response({"status": "live"})

    async def ready(self, request: web.Request) -> web.Response:
        problems = self._problems()
        if problems:
            return json_error(503, "not ready: " + "; ".join(problems))
        return json_response({"status": "ready"})


def readiness_problems(
    *,
    serving: bool,
    draining: bool,
    node_count: int,
    joined: bool | None,
    source: tuple[bool, str],
) -> list[str]:
    """The reasons `/readyz` gives (see the module docstring); `joined` None: no cluster."""
    if draining:
        return ["shutting down"]
    problems = []
    if not serving:
        problems.append("not listening yet")
    source_ok, why = source
    if not source_ok:
        problems.append(why)
    elif node_count == 0:
        problems.append("no Fn nodes known")
    if joined is False:
        problems.append("not joined to the gossip cluster yet")
    return problems
