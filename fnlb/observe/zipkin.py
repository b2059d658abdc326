"""`-zipkin URL`: finished spans batched to a Zipkin collector, off the request path.

The request path encodes a call's spans to JSON text at once and appends that to a bounded
deque (`add`): text waiting for the next post is not scanned by the garbage collector, as
span dicts would be. A task posts what gathered every
`interval` seconds, or sooner once `batch` spans wait, as one JSON array. A collector that is
down or slow costs dropped spans (counted), never a slower call: the queue is bounded and a
post that fails is not retried.

The URL picks the format, as the original's collector URL did: a path ending in
`/api/v1/spans` gets Zipkin v1 JSON (annotations `sr`/`ss` for the call, `cs`/`cr` for each
attempt, tags as binary annotations), any other path Zipkin v2 JSON, and a URL without a path
posts v2 to `/api/v2/spans`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import Counter, deque
from typing import Any, Final

import aiohttp

from fnlb.addresses import collector_url
from fnlb.observe.tracing import Span

log = logging.getLogger("fnlb.zipkin")

_ENCODER: Final = json.JSONEncoder(separators=(",", ":"))
"""Made once: `json.dumps` with arguments builds an encoder per call."""

QUEUE_LIMIT: Final = 10_000
"""Spans kept waiting at most; past it new spans are dropped (counted under `dropped`)."""


class ZipkinExporter:
    """A `SpanSink` that posts to one collector (see the module docstring)."""

    def __init__(self, url: str, *, interval: float = 1.0, batch: int = 500) -> None:
        self.url, self.version = collector_url(url)
        self.interval = interval
        self.batch = batch
        self.spans: Counter[str] = Counter()
        """sent, dropped (queue full), failed (the collector refused or could not be reached)."""
        self._queue: deque[tuple[str, int]] = deque()
        """(a call's spans as JSON array items without the brackets, how many spans)."""
        self._queued = 0
        self._wake = asyncio.Event()
        self._flushing = asyncio.Lock()  # the timer's flush and stop()'s never interleave
        self._task: asyncio.Task[None] | None = None
        self._session: aiohttp.ClientSession | None = None

    def add(self, spans: list[Span]) -> None:
        n = len(spans)
        if self._queued + n > QUEUE_LIMIT:
            self.spans["dropped"] += n
            return
        self._queue.append((self.encode_items(spans), n))
        self._queued += n
        if self._queued >= self.batch and not self._wake.is_set():
            self._wake.set()

    def start(self, *, timer: bool = True) -> None:
        """Open the HTTP session and (unless `timer` is False: tests flush by hand) start
        the task that flushes every `interval` seconds or once `batch` spans wait."""
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=10), trust_env=False
        )
        if timer:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        """Post what is queued (best effort, once), then close."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        with contextlib.suppress(Exception):
            await self.flush()
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _run(self) -> None:
        healthy = True
        while True:
            if healthy:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.interval):
                        await self._wake.wait()
            else:
                # after a failed post, wait a whole interval: a full queue would otherwise
                # wake this task on every call and try (and fail) again each time
                await asyncio.sleep(self.interval)
            self._wake.clear()
            healthy = await self.flush()

    async def flush(self) -> bool:
        """Post what is queued now, in batches of at most `batch` spans; spans that come
        meanwhile wait for the next flush, and a failed post ends this one (the rest wait),
        so a busy or dead collector costs one post per interval, not one per call. False
        when a post failed."""
        async with self._flushing:
            return await self._flush()

    async def _flush(self) -> bool:
        queue = self._queue
        pending = self._queued
        while pending > 0 and queue and self._session is not None:
            items: list[str] = []
            n = 0
            while queue and n < self.batch:
                text, count = queue.popleft()
                items.append(text)
                n += count
            self._queued -= n
            pending -= n
            try:
                async with self._session.post(
                    self.url,
                    data=f"[{','.join(items)}]".encode(),
                    headers={"Content-Type": "application/json"},
                ) as resp:
                    await resp.read()
                    ok = resp.status < 300
            except asyncio.CancelledError:
                self.spans["failed"] += n  # stopped mid-post: counted, not lost unseen
                raise
            except (aiohttp.ClientError, OSError, TimeoutError) as e:
                ok = False
                log.warning(
                    "zipkin collector unreachable", extra={"url": self.url, "error": str(e)}
                )
            else:
                if not ok:
                    log.warning("zipkin collector refused spans", extra={"url": self.url})
            self.spans["sent" if ok else "failed"] += n
            if not ok:
                return False
        return True

    def encode_items(self, spans: list[Span]) -> str:
        """`spans` in this collector's format as JSON array items (no brackets): one call's
        spans are encoded together, and a post joins such items with commas."""
        body = spans if self.version == 2 else [to_v1(s) for s in spans]
        return _ENCODER.encode(body)[1:-1]


def to_v1(span: Span) -> dict[str, Any]:
    """A v2 span in Zipkin v1 JSON: kind becomes a pair of core annotations, tags binary ones."""
    local = span["localEndpoint"]
    start, end = span["timestamp"], span["timestamp"] + span["duration"]
    first, last = ("sr", "ss") if span.get("kind") == "SERVER" else ("cs", "cr")
    out: dict[str, Any] = {
        "traceId": span["traceId"],
        "id": span["id"],
        "name": span["name"],
        "timestamp": start,
        "duration": span["duration"],
        "annotations": [
            {"timestamp": start, "value": first, "endpoint": local},
            {"timestamp": end, "value": last, "endpoint": local},
        ],
        "binaryAnnotations": [
            {"key": k, "value": v, "endpoint": local} for k, v in span.get("tags", {}).items()
        ],
    }
    if "parentId" in span:
        out["parentId"] = span["parentId"]
    remote = span.get("remoteEndpoint")
    if remote:
        key = "ca" if first == "sr" else "sa"
        out["binaryAnnotations"].append(
            {"key": key, "value": True, "endpoint": {"serviceName": "", **remote}}
        )
    return out
