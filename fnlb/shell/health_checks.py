"""Active health checks: every `hc_interval` seconds, `GET hc_path` on every node.

A check passes when the node answers 2xx with JSON `{"version": "x.y.z"}` at least
`min_api_version` (semver). Every node is checked at once each round, as the original did;
a node just added, or one the proxy failed to connect to, is checked at once out of turn, so
the first check decides a new node's state within milliseconds and a dead node leaves the
routable set right after the first failed call (one passive failure + one failed check =
the default `hc_unhealthy` of 2). A node under suspicion (a failed connection, or in a cluster
a peer's "offline" verdict) is re-checked every 0.1 s until `hc_unhealthy` failures or one
success settle it, so peers confirm a dead node in a fraction of a second.

An asyncio shell of the `Peer` (fnlb.peer.core): results go in as `health_checked` and
`metrics_read`; which nodes to check out of turn comes out of `take_checks`, drained by the
peer's pump (fnlb.shell.pump) through `run`.
"""

from __future__ import annotations

import asyncio
import logging
import time

import aiohttp

from fnlb.config import Settings, parse_semver
from fnlb.health.fn_metrics import parse_fn_metrics
from fnlb.peer.core import CONFIRM_GAP_S, Check, Peer

log = logging.getLogger("fnlb.health")

MAX_METRICS_BYTES = 1 << 20
"""A node's /metrics page larger than this is ignored (an Fn page is a few KiB)."""

"""Seconds between the quick re-checks that confirm a suspected node."""


class HealthChecker:
    def __init__(self, peer: Peer, settings: Settings, session: aiohttp.ClientSession) -> None:
        self._peer = peer
        self._settings = settings
        self._session = session
        self._min_version = parse_semver(settings.min_api_version)
        self._timeout = aiohttp.ClientTimeout(total=settings.hc_timeout)
        self._in_flight: dict[str, asyncio.Task[None]] = {}
        self._confirm: set[str] = set()
        self._loop_task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._loop_task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        tasks = [t for t in (self._loop_task, *self._in_flight.values()) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)  # a cancel of stop() itself stays

    def check_now(self, node: str, *, confirm: bool = False) -> None:
        """Check `node` out of turn, unless a check of it is already running.

        `confirm`: there is reason to think the node is down (a failed connection here, or a
        peer's "offline"), so keep checking every CONFIRM_GAP_S until our own verdict is
        reached either way, rather than waiting `hc_interval` between failures. A check
        already running takes the request over.
        """
        if confirm:
            self._confirm.add(node)
        task = self._in_flight.get(node)
        if task is not None and not task.done():
            return
        self._in_flight[node] = asyncio.get_running_loop().create_task(self._check(node))

    def run(self, checks: list[Check]) -> None:
        """Start the checks the Peer asked for (`Peer.take_checks`)."""
        for check in checks:
            self.check_now(check.node, confirm=check.confirm)

    async def _run(self) -> None:
        while True:
            for node in self._peer.nodes():
                self.check_now(node)
            await asyncio.sleep(self._settings.hc_interval)

    async def _check(self, node: str) -> None:
        attempts = 0
        while True:
            ok, error = await self.probe(node)
            attempts += 1
            self._peer.health_checked(node, ok, _now_ms(), error)
            health = self._peer.health(node)
            confirming = node in self._confirm
            if ok and not confirming:
                await self._read_metrics(node)
            if ok or health is None or health.state == "offline":
                break
            if not confirming or attempts >= self._settings.hc_unhealthy:
                break
            log.debug("health check failed", extra={"node": node, "error": error})
            await asyncio.sleep(CONFIRM_GAP_S)
        self._confirm.discard(node)

    async def _read_metrics(self, node: str) -> None:
        """The node's own load figures (fn_* on /metrics), when it publishes them."""
        try:
            async with self._session.get(f"http://{node}/metrics", timeout=self._timeout) as r:
                if r.status != 200 or (r.content_length or 0) > MAX_METRICS_BYTES:
                    return
                chunks: list[bytes] = []
                size = 0
                while size <= MAX_METRICS_BYTES:
                    chunk = await r.content.read(MAX_METRICS_BYTES + 1 - size)
                    if not chunk:
                        break
                    chunks.append(chunk)
                    size += len(chunk)
                if size > MAX_METRICS_BYTES:
                    return  # not an Fn metrics page: never read an unbounded answer
                text = b"".join(chunks).decode("utf-8", "replace")
        except (aiohttp.ClientError, OSError, ValueError, TimeoutError):
            return
        metrics = parse_fn_metrics(text, _now_ms())
        if metrics is not None:
            self._peer.metrics_read(node, metrics)

    async def probe(self, node: str) -> tuple[bool, str]:
        """One check of one node: (passed, why not)."""
        url = f"http://{node}{self._settings.hc_path}"
        try:
            async with self._session.get(url, timeout=self._timeout) as resp:
                if resp.status // 100 != 2:
                    return False, f"{self._settings.hc_path} answered {resp.status}"
                body = await resp.json(content_type=None)
        except (aiohttp.ClientError, OSError, ValueError) as e:
            return False, f"{type(e).__name__}: {e}"
        except TimeoutError:
            return False, f"no answer within {self._settings.hc_timeout:g}s"
        version = body.get("version") if isinstance(body, dict) else None
        if not isinstance(version, str):
            return False, f"{self._settings.hc_path} has no version"
        try:
            node_version = parse_semver(version)
        except ValueError as e:
            return False, str(e)
        if node_version < self._min_version:
            return False, f"incompatible API version: {version}"
        return True, ""


def _now_ms() -> int:
    return int(time.time() * 1000)
