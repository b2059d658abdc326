"""The thin asyncio side of `-db=k8s`: HTTP requests for `PodWatch`, its decisions carried out.

Why aiohttp alone rather than a Kubernetes client library: fnlb needs two requests (list pods,
watch pods) and must control exactly how the watch protocol is handled (resource versions,
bookmarks, 410, back-off, token re-reads), which is where the libraries differ or hide things.
aiohttp is already fnlb's HTTP stack, so this adds no dependency: kubernetes_asyncio brings a
generated client of the whole API (tens of MB, its own config loader and models), lightkube and
kr8s bring httpx/anyio, a second HTTP stack beside aiohttp in one event loop. The pure part
(`k8s_watch`, `k8s_pods`) is tested without sockets; this module only moves bytes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import aiohttp

from fnlb.discovery.k8s_config import ApiAccess
from fnlb.discovery.k8s_watch import (
    ApiStatusError,
    EventLines,
    ListRequest,
    NodeChange,
    PodWatch,
    WatchRequest,
)
from fnlb.errors import RemoteProtocolError

log = logging.getLogger("fnlb.k8s")

WATCH_TIMEOUT_S = 300
"""A watch asks the server to end it after 300-600 s (jittered, as client-go does), so stale
connections through proxies are replaced and all peers do not reconnect at once."""
READ_SLACK_S = 30.0
"""Beyond the server's own time-out, silence this long means the stream is dead."""
_MAX_ERROR_BODY = 64 * 1024


class PodWatcher:
    """Lists then watches the pods of one selector, calling `on_change` for every change."""

    def __init__(
        self,
        access: ApiAccess,
        selector: str,
        target_port: int,
        on_change: Callable[[NodeChange], None],
        *,
        watch_timeout_s: int = WATCH_TIMEOUT_S,
        base_delay: float = 0.5,
        max_delay: float = 30.0,
        rng: random.Random | None = None,
    ) -> None:
        self.access = access
        self.selector = selector
        self.watch = PodWatch(target_port, base_delay=base_delay, max_delay=max_delay)
        self._on_change = on_change
        self._watch_timeout_s = watch_timeout_s
        self._rng = rng or random.Random()
        self._session: aiohttp.ClientSession | None = None
        self._task: asyncio.Task[None] | None = None
        self.synced = asyncio.Event()
        self.last_error = ""
        self._url = f"{access.server}/api/v1/namespaces/{quote(access.namespace, safe='')}/pods"

    @property
    def ready(self) -> tuple[bool, str]:
        """Whether the pod list is known and the API server accepts us; why not, if not."""
        if self.watch.auth_error:
            return False, f"Kubernetes API: {self.watch.auth_error}"
        if not self.watch.synced:
            why = f": {self.last_error}" if self.last_error else ""
            return False, f"Kubernetes pod list not received yet{why}"
        return True, ""

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=self.access.ssl_context() or True),
            cookie_jar=aiohttp.DummyCookieJar(),
            trust_env=False,
        )
        self._task = asyncio.get_running_loop().create_task(self._run(), name="k8s-watch")
        log.info(
            "watching Kubernetes pods",
            extra={
                "server": self.access.server,
                "namespace": self.access.namespace,
                "selector": self.selector or "(all pods)",
            },
        )

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _run(self) -> None:
        while True:
            request = self.watch.next_request()
            try:
                if isinstance(request, ListRequest):
                    await self._list(request)
                    delay = 0.0
                else:
                    delay = await self._watch(request)
            except _HttpStatus as e:
                delay = self._failed(e.status, e.message)
            except ApiStatusError as e:
                delay = self._failed(e.code, e.message)
            except RemoteProtocolError as e:
                delay = self._failed(None, f"bad answer: {e}")
            except (aiohttp.ClientError, OSError, TimeoutError, ValueError) as e:
                delay = self._failed(None, f"{type(e).__name__}: {e}")
            if delay > 0:
                await asyncio.sleep(delay)

    def _failed(self, status: int | None, message: str) -> float:
        delay = self.watch.failed(status, self._rng.random(), message)
        self.last_error = f"HTTP {status}: {message}" if status else message
        if status == 410:
            log.info("Kubernetes resource version expired: listing pods again")
        elif status in (401, 403):
            log.error(
                "the Kubernetes API refused fnlb: %s; fnlb reports not ready until it is "
                "allowed to list and watch pods (check the ServiceAccount, Role and "
                "RoleBinding)",
                self.watch.auth_error,
                extra={"namespace": self.access.namespace, "retry_s": round(delay, 2)},
            )
        else:
            log.warning(
                "Kubernetes API request failed; retrying",
                extra={"error": self.last_error, "retry_s": round(delay, 2)},
            )
        return delay

    def _headers(self) -> dict[str, str]:
        headers = {"Accept": "application/json"}
        token = self.access.bearer_token()
        if token:
            headers["Authorization"] = f"Bearer {token}"
        return headers

    def _params(self) -> dict[str, str]:
        return {"labelSelector": self.selector} if self.selector else {}

    async def _list(self, request: ListRequest) -> None:
        assert self._session is not None
        params = {**self._params(), "limit": str(request.limit)}
        if request.continue_token:
            params["continue"] = request.continue_token
        async with self._session.get(
            self._url,
            params=params,
            headers=self._headers(),
            timeout=aiohttp.ClientTimeout(total=60),
        ) as resp:
            if resp.status != 200:
                raise await _HttpStatus.of(resp)
            body = await resp.json(content_type=None)
        change = self.watch.list_page(body)
        if change is not None:
            self.last_error = ""
            self.synced.set()
            log.info(
                "Kubernetes pods listed",
                extra={"pods": self.watch.pod_count, "nodes": len(change.nodes)},
            )
            self._on_change(change)

    async def _watch(self, request: WatchRequest) -> float:
        assert self._session is not None
        loop = asyncio.get_running_loop()
        server_timeout = int(self._watch_timeout_s * (1 + self._rng.random()))
        params = {
            **self._params(),
            "watch": "1",
            "resourceVersion": request.resource_version,
            "allowWatchBookmarks": "true",
            "timeoutSeconds": str(server_timeout),
        }
        timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=10, sock_read=server_timeout + READ_SLACK_S
        )
        async with self._session.get(
            self._url, params=params, headers=self._headers(), timeout=timeout
        ) as resp:
            if resp.status != 200:
                raise await _HttpStatus.of(resp)
            self.watch.watch_opened(loop.time())
            lines = EventLines()
            try:
                async for chunk in resp.content.iter_any():
                    for line in lines.feed(chunk):
                        try:
                            event: Any = json.loads(line)
                        except ValueError:
                            raise RemoteProtocolError("k8s_bad_event", "not JSON") from None
                        change = self.watch.watch_event(event)
                        if change is not None:
                            self._on_change(change)
                        if self.watch.resource_version is None:  # 410 inside the stream
                            log.info("Kubernetes watch expired (410): listing pods again")
                            return 0.0
            except (aiohttp.ClientPayloadError, aiohttp.ClientConnectionError, TimeoutError) as e:
                # An established stream that breaks is a watch that ended: resume from the
                # last complete event at once (PodWatch backs off only if it died young).
                log.info("Kubernetes watch stream broke", extra={"error": repr(e)})
        return self.watch.watch_ended(loop.time(), self._rng.random())


class _HttpStatus(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"HTTP {status}: {message}")
        self.status = status
        self.message = message

    @classmethod
    async def of(cls, resp: aiohttp.ClientResponse) -> _HttpStatus:
        """The status and the `message` of the Kubernetes Status object in the body."""
        raw = await resp.content.read(_MAX_ERROR_BODY)
        message = raw.decode("utf-8", "replace").strip()[:300]
        with contextlib.suppress(ValueError, AttributeError):
            message = str(json.loads(raw).get("message", message))
        return cls(resp.status, message)
