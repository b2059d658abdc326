"""The list-then-watch protocol of the Kubernetes API, as a state machine without I/O.

Rule 1: no asyncio, sockets, time or random here: every input carries what it needs (`now`,
a random number for jitter) and every decision is returned. Rule 2: the object keeps the pod
set and the resource version (RV); the adapter (`k8s_client`) only moves bytes.

Theory of operation (client-go's reflector is the reference behaviour):

1. With no RV to resume from, `next_request()` is a `ListRequest`: pages of a `PodList`
   (`limit`, `continue`). The last page's `metadata.resourceVersion` is where the list was
   taken; the pods of all pages replace the whole set at once, so a relist never empties the
   routable set for a moment. The change it returns is `full`: the owner may drop anything it
   holds that the list lacks.
2. Then `next_request()` is a `WatchRequest` from that RV. Each event line goes to
   `watch_event`: ADDED/MODIFIED/DELETED change one pod and move the RV on; BOOKMARK only moves
   the RV; ERROR with a Status of code 410 (the RV fell out of the server's history) drops the
   RV, so the next request lists again; any other ERROR raises `ApiStatusError`.
3. A watch ends (the server's `timeoutSeconds`, a proxy, a dropped connection). `watch_ended`
   says how long to wait before watching again from the last RV: at once after a watch that
   delivered something or lasted, with back-off after one that ended at once empty-handed (a
   server that closes every stream must not be hammered).
4. `failed(status, rand)` takes an HTTP status (None: no answer) and returns the delay before
   the next request: 410 relists at once; 401/403 sets `auth_error` (readiness fails, the log
   says why) and backs off, since a rotated token may fix it; anything else backs off. Delays
   grow from `base` by doubling to `cap`, with jitter so that every fnlb in a cluster does not
   reconnect to the API server in the same instant.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from fnlb.discovery.k8s_pods import pod_key, pod_node
from fnlb.errors import RemoteProtocolError

LIST_PAGE = 500
"""Pods per list page: the API server's own recommendation for large collections."""
QUICK_END_S = 1.0
"""A watch that ends sooner than this without one event counts as a failed attempt."""


def backoff_delay(attempt: int, rand: float, *, base: float = 0.5, cap: float = 30.0) -> float:
    """Seconds to wait before retry number `attempt` (0 = first), for `rand` in [0, 1).

    Doubling from `base`, capped at `cap`, then "equal jitter": a uniform pick in [d/2, d), so
    the wait never collapses to zero and peers that failed together spread out.
    """
    if attempt < 0 or not 0.0 <= rand < 1.0:
        raise ValueError("attempt must be >= 0 and rand in [0, 1)")
    d = min(cap, base * 2.0 ** min(attempt, 62))
    return d / 2 + rand * d / 2


class ApiStatusError(Exception):
    """The API server answered a watch with an ERROR event (a `Status` object)."""

    def __init__(self, code: int | None, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


@dataclass(frozen=True, slots=True)
class ListRequest:
    """GET the pod list; `continue_token` asks for the page after the last one."""

    continue_token: str | None
    limit: int = LIST_PAGE


@dataclass(frozen=True, slots=True)
class WatchRequest:
    """GET a watch stream of changes after `resource_version`."""

    resource_version: str


@dataclass(frozen=True, slots=True)
class NodeChange:
    """What one list or event did to the node set.

    `full`: this came from a complete list, so `nodes` is the whole truth (an owner shared
    with others may drop what the list lacks); otherwise only `added`/`removed` are news.
    """

    nodes: frozenset[str]
    added: frozenset[str]
    removed: frozenset[str]
    full: bool = False


@dataclass(slots=True)
class PodWatch:
    """The pod set of one label selector, kept current by list and watch (module docstring)."""

    target_port: int
    base_delay: float = 0.5
    max_delay: float = 30.0
    resource_version: str | None = None
    synced: bool = False
    """True once a complete list arrived; stays true through watches and relists."""
    auth_error: str | None = None
    """Why the API server refused us (401/403), until a request succeeds again."""
    counters: dict[str, int] = field(default_factory=dict)
    _pods: dict[str, str | None] = field(default_factory=dict)
    _listing: dict[str, str | None] | None = None
    _continue: str | None = None
    _attempt: int = 0
    _watch_started: float = 0.0
    _watch_events: int = 0

    @property
    def nodes(self) -> frozenset[str]:
        """The addresses of the pods that are nodes now."""
        return frozenset(n for n in self._pods.values() if n is not None)

    @property
    def pod_count(self) -> int:
        """Pods matching the selector, nodes or not."""
        return len(self._pods)

    def next_request(self) -> ListRequest | WatchRequest:
        if self.resource_version is None:
            return ListRequest(self._continue)
        return WatchRequest(self.resource_version)

    # -- lists ---------------------------------------------------------------------------

    def list_page(self, body: Any) -> NodeChange | None:
        """One page of a PodList; the change once the last page is in, else None."""
        if not isinstance(body, Mapping) or not isinstance(body.get("items"), list):
            raise RemoteProtocolError("k8s_bad_list", "a PodList needs an items array")
        meta = body.get("metadata")
        meta = meta if isinstance(meta, Mapping) else {}
        if self._listing is None or self._continue is None:
            self._listing = {}
        for pod in body["items"]:
            if isinstance(pod, Mapping) and (key := pod_key(pod)) is not None:
                self._listing[key] = pod_node(pod, self.target_port)
        self._succeeded()
        token = meta.get("continue")
        if isinstance(token, str) and token:
            self._continue = token
            return None
        rv = meta.get("resourceVersion")
        if not isinstance(rv, str) or not rv:
            raise RemoteProtocolError("k8s_bad_list", "the PodList has no resourceVersion")
        before = self.nodes
        self._pods, self._listing, self._continue = self._listing, None, None
        self.resource_version = rv
        self.synced = True
        self._count("lists")
        after = self.nodes
        return NodeChange(after, after - before, before - after, full=True)

    # -- watches -------------------------------------------------------------------------

    def watch_opened(self, now: float) -> None:
        """The server answered the watch with 200; events follow."""
        self._succeeded()
        self._watch_started = now
        self._watch_events = 0

    def watch_event(self, event: Any) -> NodeChange | None:
        """One decoded event line; the change it made to the node set, if any."""
        if not isinstance(event, Mapping) or not isinstance(event.get("object"), Mapping):
            raise RemoteProtocolError("k8s_bad_event", "an event needs a type and an object")
        kind = event.get("type")
        obj = event["object"]
        self._watch_events += 1
        if kind == "ERROR":
            code = obj.get("code")
            code = code if isinstance(code, int) else None
            if code == 410:
                self._expired()
                return None
            raise ApiStatusError(code, str(obj.get("message", "")))
        rv = obj.get("metadata", {}).get("resourceVersion") if isinstance(obj, Mapping) else None
        if not isinstance(rv, str) or not rv:
            raise RemoteProtocolError("k8s_bad_event", f"{kind} event without resourceVersion")
        if kind == "BOOKMARK":
            self.resource_version = rv
            self._count("bookmarks")
            return None
        key = pod_key(obj)
        if kind not in ("ADDED", "MODIFIED", "DELETED") or key is None:
            raise RemoteProtocolError("k8s_bad_event", f"unknown event type {kind!r}")
        before = self.nodes
        if kind == "DELETED":
            self._pods.pop(key, None)
        else:
            self._pods[key] = pod_node(obj, self.target_port)
        self.resource_version = rv
        self._count("events")
        after = self.nodes
        if after == before:
            return None
        return NodeChange(after, after - before, before - after)

    def watch_ended(self, now: float, rand: float) -> float:
        """The stream closed without an error status: seconds to wait before the next one."""
        self._count("watch_ends")
        if self._watch_events == 0 and now - self._watch_started < QUICK_END_S:
            return self._backoff(rand)
        return 0.0

    # -- failures ------------------------------------------------------------------------

    def failed(self, status: int | None, rand: float, message: str = "") -> float:
        """A request failed with HTTP `status` (None: no answer): seconds before the next."""
        self._count(f"failed_{status or 'conn'}")
        if status == 410:
            self._expired()
            return 0.0
        if status in (401, 403):
            what = "token refused (401)" if status == 401 else "not allowed to list pods (403)"
            self.auth_error = f"{what}: {message}" if message else what
        return self._backoff(rand)

    def _expired(self) -> None:
        """Our RV (or list continue token) is too old: list again from scratch."""
        self._count("expired")
        self.resource_version = None
        self._listing = None
        self._continue = None

    def _succeeded(self) -> None:
        self._attempt = 0
        self.auth_error = None

    def _backoff(self, rand: float) -> float:
        delay = backoff_delay(self._attempt, rand, base=self.base_delay, cap=self.max_delay)
        self._attempt += 1
        return delay

    def _count(self, what: str) -> None:
        self.counters[what] = self.counters.get(what, 0) + 1


MAX_EVENT_BYTES = 16 * 1024 * 1024
"""Longest event line taken: a pod with huge annotations is still far below this."""


class EventLines:
    """Splits a watch stream's bytes into complete lines, whatever the chunk boundaries.

    A line cut off by a dropped connection stays in the buffer and is dropped with it: the
    next watch resumes from the RV of the last complete event, so nothing is lost or applied
    half.
    """

    __slots__ = ("_buf",)

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[bytes]:
        self._buf += data
        if b"\n" not in data:
            if len(self._buf) > MAX_EVENT_BYTES:
                raise RemoteProtocolError("k8s_event_too_long", f"over {MAX_EVENT_BYTES} bytes")
            return []
        *lines, rest = self._buf.split(b"\n")
        self._buf = bytearray(rest)
        return [bytes(line) for line in lines if line.strip()]

    @property
    def pending(self) -> int:
        """Bytes of an incomplete line held."""
        return len(self._buf)
