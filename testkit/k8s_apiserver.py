"""A Kubernetes API server for tests: pods only, on loopback, speaking the real protocol.

It serves `GET /api/v1/namespaces/NS/pods` as a paged `PodList` (`limit`, `continue`) and, with
`watch=1`, as a chunked stream of one JSON event per line from a `resourceVersion`, with the
semantics clients rely on: a global, increasing RV; a bounded history, beyond which a watch
gets `410 Gone` (as an HTTP status or an ERROR event, as real servers do both); BOOKMARK events
on request; `timeoutSeconds`; label selectors (`k=v`, `k!=v`, `k`, `!k`). Tests change pods
(`put`, `delete`), break streams (`drop_watches`, optionally mid-event), rotate the accepted
token and forbid access, then watch what clients do.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from testkit.k8s_pods import IPS, pod


def selector_matches(selector: str, labels: dict[str, str]) -> bool:
    for term in filter(None, (t.strip() for t in selector.split(","))):
        if "!=" in term:
            k, v = term.split("!=", 1)
            if labels.get(k.strip()) == v.strip():
                return False
        elif "=" in term:
            k, v = term.replace("==", "=").split("=", 1)
            if labels.get(k.strip()) != v.strip():
                return False
        elif term.startswith("!"):
            if term[1:] in labels:
                return False
        elif term not in labels:
            return False
    return True


@dataclass(eq=False)
class _Watcher:
    namespace: str
    selector: str
    queue: asyncio.Queue[dict[str, Any] | None] = field(default_factory=asyncio.Queue)


class FakeApiServer:
    """See the module docstring. `url` once started; every listener on 127.0.0.1."""

    def __init__(self, *, history: int = 1000, token: str = "token-1", ssl: Any = None) -> None:
        self._ssl = ssl
        self.rv = 100
        self.pods: dict[tuple[str, str], dict[str, Any]] = {}
        self.history: deque[tuple[int, str, dict[str, Any]]] = deque(maxlen=history)
        self.tokens = {token}
        self.forbidden = False
        self.gone_as_event = False
        self.requests: list[dict[str, str]] = []
        self.statuses: list[int] = []
        self._watchers: set[_Watcher] = set()
        self._runner: web.AppRunner | None = None
        self.url = ""

    # -- lifecycle -----------------------------------------------------------------------

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/api/v1/namespaces/{ns}/pods", self._pods)
        self._runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0, ssl_context=self._ssl)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"{'https' if self._ssl else 'http'}://127.0.0.1:{port}"

    async def stop(self) -> None:
        for w in list(self._watchers):
            w.queue.put_nowait(None)
        if self._runner is not None:
            await self._runner.cleanup()

    def kubeconfig(self, token_file: str = "", namespace: str = "fn") -> dict[str, Any]:
        user: dict[str, Any] = {"tokenFile": token_file} if token_file else {"token": "token-1"}
        return {
            "apiVersion": "v1",
            "kind": "Config",
            "current-context": "test",
            "contexts": [
                {"name": "test", "context": {"cluster": "c", "user": "u", "namespace": namespace}}
            ],
            "clusters": [{"name": "c", "cluster": {"server": self.url}}],
            "users": [{"name": "u", "user": user}],
        }

    # -- changing pods -------------------------------------------------------------------

    def put(self, p: dict[str, Any]) -> None:
        """Create or replace a pod (ADDED or MODIFIED)."""
        key = (p["metadata"]["namespace"], p["metadata"]["name"])
        kind = "MODIFIED" if key in self.pods else "ADDED"
        self._emit(kind, key, p)

    def delete(self, namespace: str, name: str) -> None:
        p = self.pods.get((namespace, name))
        if p is not None:
            self._emit("DELETED", (namespace, name), p)

    def scale(self, n: int, *, namespace: str = "fn", prefix: str = "fn") -> None:
        """Make the pods `prefix-0..n-1` ready (IP 10.1.x.y) and delete the others."""
        wanted = {f"{prefix}-{i}" for i in range(n)}
        for (ns, name), _ in list(self.pods.items()):
            if ns == namespace and name.startswith(f"{prefix}-") and name not in wanted:
                self.delete(ns, name)
        for i in range(n):
            name = f"{prefix}-{i}"
            if (namespace, name) not in self.pods:
                self.put(pod(name, f"10.1.{i // 250}.{i % 250 + 1}", namespace=namespace))

    def bookmark(self) -> None:
        """Send a BOOKMARK with the current RV to every watch."""
        for w in self._watchers:
            w.queue.put_nowait(
                {
                    "type": "BOOKMARK",
                    "object": {"kind": "Pod", "metadata": {"resourceVersion": str(self.rv)}},
                }
            )

    def compact(self) -> None:
        """Forget all history: every RV before now is too old (410) from here on."""
        self.history.clear()
        self.history.append((self.rv, "COMPACTED", {}))

    def drop_watches(self, *, mid_event: bool = False) -> None:
        """Cut every watch stream (after half an event line when `mid_event`)."""
        for w in list(self._watchers):
            w.queue.put_nowait({"type": "__cut__", "mid_event": mid_event})

    @property
    def watch_count(self) -> int:
        return len(self._watchers)

    def _emit(self, kind: str, key: tuple[str, str], p: dict[str, Any]) -> None:
        self.rv += 1
        obj = copy.deepcopy(p)
        obj["metadata"]["resourceVersion"] = str(self.rv)
        if kind == "DELETED":
            self.pods.pop(key, None)
        else:
            self.pods[key] = obj
        self.history.append((self.rv, kind, obj))
        for w in self._watchers:
            if self._visible(obj, w.namespace, w.selector):
                w.queue.put_nowait({"type": kind, "object": obj})

    @staticmethod
    def _visible(obj: dict[str, Any], namespace: str, selector: str) -> bool:
        meta = obj["metadata"]
        return meta["namespace"] == namespace and selector_matches(
            selector, meta.get("labels") or {}
        )

    # -- HTTP ----------------------------------------------------------------------------

    def _status(self, code: int, reason: str, message: str) -> web.Response:
        self.statuses.append(code)
        body = {
            "kind": "Status",
            "apiVersion": "v1",
            "status": "Failure",
            "message": message,
            "reason": reason,
            "code": code,
        }
        return web.json_response(body, status=code)

    async def _pods(self, request: web.Request) -> web.StreamResponse:
        q = dict(request.query)
        self.requests.append(q)
        auth = request.headers.get("Authorization", "")
        if not auth.startswith("Bearer ") or auth[7:] not in self.tokens:
            return self._status(401, "Unauthorized", "Unauthorized")
        if self.forbidden:
            return self._status(
                403,
                "Forbidden",
                'pods is forbidden: User "system:serviceaccount:fn:fnlb" '
                'cannot list resource "pods"',
            )
        ns = request.match_info["ns"]
        selector = q.get("labelSelector", "")
        if q.get("watch") in ("1", "true"):
            return await self._watch(request, ns, selector, q)
        return self._list(ns, selector, q)

    def _list(self, ns: str, selector: str, q: dict[str, str]) -> web.Response:
        items = sorted(
            (p for p in self.pods.values() if self._visible(p, ns, selector)),
            key=lambda p: str(p["metadata"]["name"]),
        )
        start, rv = 0, self.rv
        if "continue" in q:
            offset, _, at = q["continue"].partition(":")
            if int(at) < self.oldest_rv:
                return self._status(410, "Expired", "The provided continue parameter is too old")
            start, rv = int(offset), int(at)
        limit = int(q.get("limit", "0")) or len(items) or 1
        page = items[start : start + limit]
        meta: dict[str, Any] = {"resourceVersion": str(rv)}
        if start + limit < len(items):
            meta["continue"] = f"{start + limit}:{rv}"
        self.statuses.append(200)
        return web.json_response(
            {"kind": "PodList", "apiVersion": "v1", "metadata": meta, "items": page}
        )

    @property
    def oldest_rv(self) -> int:
        return self.history[0][0] if self.history else 0

    async def _watch(
        self, request: web.Request, ns: str, selector: str, q: dict[str, str]
    ) -> web.StreamResponse:
        since = int(q.get("resourceVersion") or 0)
        if since and since < self.oldest_rv and not self.gone_as_event:
            return self._status(410, "Expired", f"too old resource version: {since}")
        watcher = _Watcher(ns, selector)
        if since and since < self.oldest_rv:
            watcher.queue.put_nowait(
                {
                    "type": "ERROR",
                    "object": {
                        "kind": "Status",
                        "code": 410,
                        "reason": "Expired",
                        "message": f"too old resource version: {since}",
                    },
                }
            )
        else:
            for rv, kind, obj in self.history:
                if rv > since and kind != "COMPACTED" and self._visible(obj, ns, selector):
                    watcher.queue.put_nowait({"type": kind, "object": obj})
        resp = web.StreamResponse(headers={"Content-Type": "application/json"})
        resp.enable_chunked_encoding()
        self.statuses.append(200)
        await resp.prepare(request)
        self._watchers.add(watcher)
        try:
            async with asyncio.timeout(float(q.get("timeoutSeconds") or 3600)):
                while True:
                    ev = await watcher.queue.get()
                    if ev is None:
                        break
                    line = json.dumps(ev).encode() + b"\n"
                    if ev["type"] == "__cut__":
                        if ev["mid_event"]:
                            fake = {"type": "ADDED", "object": pod("half", "10.9.9.9")}
                            half = json.dumps(fake).encode()
                            await resp.write(half[: len(half) // 2])
                        assert request.transport is not None
                        request.transport.abort()
                        break
                    await resp.write(line)
        except TimeoutError:
            pass  # the server's timeoutSeconds: a clean end of the stream
        finally:
            self._watchers.discard(watcher)
        return resp


@contextlib.asynccontextmanager
async def fn_pods() -> AsyncIterator[int]:
    """Fn-like servers on every address in IPS, one port; yields the port."""

    async def version(request: web.Request) -> web.Response:
        return web.json_response({"version": "0.3.579"})

    app = web.Application()
    app.router.add_get("/version", version)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    first = web.TCPSite(runner, IPS[0], 0)
    await first.start()
    port = runner.addresses[0][1]
    for ip in IPS[1:]:
        await web.TCPSite(runner, ip, port).start()
    try:
        yield port
    finally:
        await runner.cleanup()
