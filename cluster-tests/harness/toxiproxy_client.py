"""A toxiproxy client that speaks only the HTTP API, so any toxiproxy server will do.

Scenarios use this against whichever server `services.start_toxiproxy` started: Shopify's
`toxiproxy-server` when it is on PATH, else ours (harness.toxiproxy). The transport is a
function, so the same client reaches a server inside a network namespace
(`Requester` from `Host`, see `for_host`) or on loopback (`http_requester`).
"""

from __future__ import annotations

import contextlib
import http.client
import json
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from harness.netns import Host

#: (method, path, JSON body or None) -> (status, response body)
Requester = Callable[[str, str, bytes | None], tuple[int, bytes]]


class ToxiproxyError(RuntimeError):
    """The toxiproxy API refused a request; `status` is its HTTP status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"toxiproxy: HTTP {status}: {message}")
        self.status = status
        self.message = message


def http_requester(address: str, *, timeout: float = 10.0) -> Requester:
    """Requests to a toxiproxy API at `address` (host:port) from this network namespace."""
    host, _, port = address.rpartition(":")

    def request(method: str, path: str, body: bytes | None) -> tuple[int, bytes]:
        conn = http.client.HTTPConnection(host, int(port), timeout=timeout)
        try:
            headers = {"Content-Type": "application/json"} if body is not None else {}
            conn.request(method, path, body=body, headers=headers)
            resp = conn.getresponse()
            return resp.status, resp.read()
        finally:
            conn.close()

    return request


@dataclass(frozen=True, slots=True)
class ToxicInfo:
    name: str
    type: str
    stream: str
    toxicity: float
    attributes: Mapping[str, float] = field(default_factory=dict)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ToxicInfo:
        return cls(
            data["name"],
            data["type"],
            data.get("stream", "downstream"),
            float(data.get("toxicity", 1.0)),
            dict(data.get("attributes") or {}),
        )


@dataclass(frozen=True, slots=True)
class ProxyInfo:
    name: str
    listen: str
    upstream: str
    enabled: bool
    toxics: tuple[ToxicInfo, ...] = ()

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ProxyInfo:
        return cls(
            data["name"],
            data["listen"],
            data["upstream"],
            bool(data["enabled"]),
            tuple(ToxicInfo.from_json(t) for t in data.get("toxics") or ()),
        )

    @property
    def port(self) -> int:
        return int(self.listen.rpartition(":")[2])


class ToxiproxyClient:
    """Proxies and toxics, managed through toxiproxy's HTTP API."""

    def __init__(self, requester: Requester) -> None:
        self._request = requester

    @classmethod
    def at(cls, address: str) -> ToxiproxyClient:
        """A client for the API at `address` (host:port) reachable from here."""
        return cls(http_requester(address))

    @classmethod
    def for_host(cls, host: Host, address: str) -> ToxiproxyClient:
        """A client whose requests start from inside `host` (for APIs on the test network)."""

        def request(method: str, path: str, body: bytes | None) -> tuple[int, bytes]:
            headers = {"Content-Type": "application/json"} if body is not None else {}
            reply = host.http(method, address, path, body=body, headers=headers, timeout=10)
            return reply.status, reply.body

        return cls(request)

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        payload = None if body is None else json.dumps(body).encode()
        status, data = self._request(method, path, payload)
        if status >= 400:
            try:
                message = str(json.loads(data).get("error", data[:200]))
            except (ValueError, AttributeError):
                message = data[:200].decode(errors="replace")
            raise ToxiproxyError(status, message)
        if status == 204 or not data:
            return None
        return json.loads(data)

    # -- server ------------------------------------------------------------------------

    def version(self) -> str:
        status, data = self._request("GET", "/version", None)
        if status != 200:
            raise ToxiproxyError(status, data[:200].decode(errors="replace"))
        try:
            parsed = json.loads(data)
        except ValueError:
            return data.decode().strip()  # older servers answer plain text
        return str(parsed.get("version")) if isinstance(parsed, dict) else str(parsed)

    def wait_ready(self, timeout: float = 15.0) -> None:
        """Poll /version until the server answers."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.version()
                return
            except (OSError, ToxiproxyError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def reset(self) -> None:
        """Enable every proxy and remove every toxic."""
        self._call("POST", "/reset")

    # -- proxies -----------------------------------------------------------------------

    def proxies(self) -> dict[str, ProxyInfo]:
        data = self._call("GET", "/proxies")
        return {name: ProxyInfo.from_json(p) for name, p in data.items()}

    def create_proxy(
        self, name: str, listen: str, upstream: str, *, enabled: bool = True
    ) -> ProxyInfo:
        body = {"name": name, "listen": listen, "upstream": upstream, "enabled": enabled}
        return ProxyInfo.from_json(self._call("POST", "/proxies", body))

    def proxy(self, name: str) -> ProxyInfo:
        return ProxyInfo.from_json(self._call("GET", f"/proxies/{name}"))

    def update_proxy(
        self,
        name: str,
        *,
        enabled: bool | None = None,
        listen: str | None = None,
        upstream: str | None = None,
    ) -> ProxyInfo:
        body: dict[str, Any] = {}
        if enabled is not None:
            body["enabled"] = enabled
        if listen is not None:
            body["listen"] = listen
        if upstream is not None:
            body["upstream"] = upstream
        return ProxyInfo.from_json(self._call("POST", f"/proxies/{name}", body))

    def delete_proxy(self, name: str) -> None:
        self._call("DELETE", f"/proxies/{name}")

    @contextlib.contextmanager
    def down(self, proxy: str) -> Iterator[ProxyInfo]:
        """The proxy disabled (refuses connections, existing ones closed) for the block."""
        info = self.update_proxy(proxy, enabled=False)
        try:
            yield info
        finally:
            self.update_proxy(proxy, enabled=True)

    # -- toxics ------------------------------------------------------------------------

    def toxics(self, proxy: str) -> list[ToxicInfo]:
        return [ToxicInfo.from_json(t) for t in self._call("GET", f"/proxies/{proxy}/toxics")]

    def add_toxic(
        self,
        proxy: str,
        type: str,
        attributes: Mapping[str, float] | None = None,
        *,
        name: str | None = None,
        stream: str = "downstream",
        toxicity: float = 1.0,
    ) -> ToxicInfo:
        body: dict[str, Any] = {
            "type": type,
            "stream": stream,
            "toxicity": toxicity,
            "attributes": dict(attributes or {}),
        }
        if name is not None:
            body["name"] = name
        return ToxicInfo.from_json(self._call("POST", f"/proxies/{proxy}/toxics", body))

    def toxic(self, proxy: str, name: str) -> ToxicInfo:
        return ToxicInfo.from_json(self._call("GET", f"/proxies/{proxy}/toxics/{name}"))

    def update_toxic(
        self,
        proxy: str,
        name: str,
        attributes: Mapping[str, float] | None = None,
        *,
        toxicity: float | None = None,
    ) -> ToxicInfo:
        body: dict[str, Any] = {"attributes": dict(attributes or {})}
        if toxicity is not None:
            body["toxicity"] = toxicity
        return ToxicInfo.from_json(self._call("POST", f"/proxies/{proxy}/toxics/{name}", body))

    def remove_toxic(self, proxy: str, name: str) -> None:
        self._call("DELETE", f"/proxies/{proxy}/toxics/{name}")

    @contextlib.contextmanager
    def toxic_applied(
        self,
        proxy: str,
        type: str,
        attributes: Mapping[str, float] | None = None,
        *,
        name: str | None = None,
        stream: str = "downstream",
        toxicity: float = 1.0,
    ) -> Iterator[ToxicInfo]:
        """A toxic in force for the block, removed after it."""
        info = self.add_toxic(proxy, type, attributes, name=name, stream=stream, toxicity=toxicity)
        try:
            yield info
        finally:
            self.remove_toxic(proxy, info.name)
