"""Traces: a span per call and per attempt, W3C/B3 context in, W3C context out to the node.

Context in: `traceparent` (W3C Trace Context), else the B3 single `b3` header, else the
`X-B3-TraceId`/`X-B3-SpanId`/`X-B3-Sampled` headers. A caller's sampling decision is kept;
a call without one is sampled at `-trace-sample-rate`. An unsampled call costs one header
look-up and no allocation: no span is made and the headers pass through as they came.

Context out: every attempt sends `traceparent: 00-<trace id>-<attempt span id>-01` (the
caller's `tracestate` passes along unchanged), and a caller that spoke B3 gets its B3 headers
rewritten the same way, so the Fn node's spans hang under the attempt that reached it.

Spans (Zipkin's model): the call is a SERVER span named after the method, tagged with the
function, the node that answered, the routing outcome (home, spread, spill, retry), the
attempts and the status; each attempt is a CLIENT span under it, tagged with its node and
result (answered, connect, busy, disconnect, error, cancelled). Finished spans go to a
`SpanSink` (fnlb.observe.zipkin batches them off the request path).

Why not OpenTelemetry: its SDK took 52 µs of CPU per traced call where this module and the
Zipkin exporter take 11 (bench/otel_span_cost.py); a small exporter of Zipkin JSON is all
`-zipkin` needs (docs/observability.md).
"""

from __future__ import annotations

import random
import re
from typing import TYPE_CHECKING, Any, Final, Protocol

if TYPE_CHECKING:
    from fnlb.observe.calls import CallRequest

_TRACEPARENT: Final = re.compile(r"^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")
_HEX: Final = re.compile(r"^[0-9a-f]+$")
_ZERO_TRACE: Final = "0" * 32
_ZERO_SPAN: Final = "0" * 16
CONTEXT_HEADERS: Final = frozenset(
    {"traceparent", "b3", "x-b3-traceid", "x-b3-spanid", "x-b3-parentspanid", "x-b3-sampled"}
)

Span = dict[str, Any]
"""A finished span in Zipkin v2's JSON model (timestamps and durations in microseconds)."""


class SpanSink(Protocol):
    def add(self, spans: list[Span]) -> None:
        """Take finished spans; must not block or await (called on the request path)."""
        ...


class Context:
    """A caller's trace context: ids in lower-case hex, and its sampling decision if any."""

    __slots__ = ("b3", "parent_id", "sampled", "trace_id")

    def __init__(self, trace_id: str, parent_id: str, sampled: bool | None, b3: bool) -> None:
        self.trace_id = trace_id
        self.parent_id = parent_id
        self.sampled = sampled
        self.b3 = b3


def parse_context(headers: Any) -> Context | None:
    """The trace context a request carries (W3C first, then B3); None if none or invalid."""
    tp = headers.get("traceparent")
    if tp:
        m = _TRACEPARENT.match(tp.strip().lower())
        if m and m.group(1) != "ff" and m.group(2) != _ZERO_TRACE and m.group(3) != _ZERO_SPAN:
            return Context(m.group(2), m.group(3), bool(int(m.group(4), 16) & 1), False)
    single = headers.get("b3")
    if single:
        parts = single.strip().lower().split("-")
        if len(parts) == 1:  # only a decision: "1", "0" or "d"
            return Context("", "", parts[0] in ("1", "d"), True) if parts[0] else None
        if _b3_ids(parts[0], parts[1]):
            sampled = parts[2] in ("1", "d") if len(parts) > 2 else None
            return Context(parts[0].rjust(32, "0"), parts[1], sampled, True)
        return None
    trace_id = headers.get("X-B3-TraceId")
    span_id = headers.get("X-B3-SpanId")
    flag = headers.get("X-B3-Sampled") or headers.get("X-B3-Flags")
    decision = None if flag is None else flag.strip().lower() in ("1", "true", "d")
    if trace_id and span_id:
        t, s = trace_id.strip().lower(), span_id.strip().lower()
        if _b3_ids(t, s):
            return Context(t.rjust(32, "0"), s, decision, True)
        return None
    if decision is not None:
        return Context("", "", decision, True)
    return None


def _b3_ids(trace_id: str, span_id: str) -> bool:
    return (
        len(trace_id) in (16, 32)
        and len(span_id) == 16
        and bool(_HEX.match(trace_id))
        and bool(_HEX.match(span_id))
        and trace_id.strip("0") != ""
        and span_id.strip("0") != ""
    )


class Tracer:
    """Starts sampled calls' traces; `-zipkin` turns it on."""

    __slots__ = ("_endpoints", "_rng", "local", "rate", "sink")

    def __init__(
        self,
        sink: SpanSink,
        *,
        sample_rate: float = 1.0,
        service: str = "fnlb",
        rng: random.Random | None = None,
    ) -> None:
        self.sink = sink
        self.rate = sample_rate
        self.local: dict[str, Any] = {"serviceName": service}
        self._rng = rng or random.Random()
        self._endpoints: dict[str, dict[str, Any]] = {}

    def new_id(self, bits: int = 64) -> str:
        """A random id in lower-case hex, never all zeros (W3C and B3 forbid that)."""
        return f"{self._rng.getrandbits(bits) or 1:0{bits // 4}x}"

    def endpoint(self, node: str) -> dict[str, Any]:
        """A node's Zipkin endpoint, made once per node (spans share it; never mutated)."""
        found = self._endpoints.get(node)
        if found is None:
            if len(self._endpoints) >= 4096:
                self._endpoints.clear()  # bounded: nodes come and go
            found = self._endpoints[node] = _endpoint(node)
        return found

    def begin(
        self, request: CallRequest, headers: list[tuple[str, str]] | None
    ) -> CallTrace | None:
        """A call's trace if it is sampled. `headers`: the node request's headers, whose
        context headers give way to ours; None for a data plane that writes its node requests
        as bytes: it leaves out CONTEXT_HEADERS itself and adds `propagation()` per attempt."""
        ctx = parse_context(request.headers)
        if ctx is not None and ctx.sampled is not None:
            sampled = ctx.sampled
        else:
            sampled = self.rate >= 1.0 or self._rng.random() < self.rate
        if not sampled:
            return None  # the caller's headers, if any, pass to the node unchanged
        trace_id = ctx.trace_id if ctx is not None and ctx.trace_id else self.new_id(128)
        parent = ctx.parent_id if ctx is not None and ctx.trace_id else ""
        b3 = ctx is not None and ctx.b3
        if headers is not None:  # the caller's context headers give way to ours (per attempt)
            headers[:] = [(k, v) for k, v in headers if k.lower() not in CONTEXT_HEADERS]
        return CallTrace(self, request, headers, trace_id, parent, b3)


class CallTrace:
    """One sampled call: its span id, its attempts' spans, the node request's headers."""

    __slots__ = (
        "_b3",
        "_headers",
        "_slot",
        "attempt_id",
        "attempt_node",
        "attempts",
        "parent_id",
        "request",
        "span_id",
        "trace_id",
        "tracer",
    )

    def __init__(
        self,
        tracer: Tracer,
        request: CallRequest,
        headers: list[tuple[str, str]] | None,
        trace_id: str,
        parent_id: str,
        b3: bool,
    ) -> None:
        self.tracer = tracer
        self.request = request
        self.trace_id = trace_id
        self.parent_id = parent_id
        self.span_id = tracer.new_id()
        self.attempts: list[Span] = []
        self.attempt_id = ""
        self.attempt_node = ""
        self._headers = headers
        self._b3 = b3
        self._slot = -1
        if headers is not None:
            self._slot = len(headers)
            headers.append(("traceparent", ""))
            if b3:
                headers.append(("b3", ""))

    def attempt_started(self, node: str, now: float) -> None:
        """An attempt on `node` is about to be sent: name its span in the node's headers."""
        self.attempt_id = aid = self.tracer.new_id()
        self.attempt_node = node
        headers = self._headers
        if headers is not None:
            headers[self._slot] = ("traceparent", f"00-{self.trace_id}-{aid}-01")
            if self._b3:
                headers[self._slot + 1] = ("b3", f"{self.trace_id}-{aid}-1-{self.span_id}")

    def propagation(self) -> bytes:
        """The context header lines naming the current attempt, for a node request written
        as bytes (`begin` with no header list): what the header list gets otherwise."""
        line = b"traceparent: 00-%s-%s-01\r\n" % (self.trace_id.encode(), self.attempt_id.encode())
        if self._b3:
            line += b"b3: %s-%s-1-%s\r\n" % (
                self.trace_id.encode(),
                self.attempt_id.encode(),
                self.span_id.encode(),
            )
        return line

    def attempt_ended(
        self, node: str, status: int, result: str, started: float, ended: float
    ) -> None:
        tags = {"fnlb.node": node, "fnlb.attempt": str(len(self.attempts)), "fnlb.result": result}
        if status:
            tags["http.status_code"] = str(status)
        if result not in ("answered",):
            tags["error"] = result
        self.attempts.append(
            {
                "traceId": self.trace_id,
                "id": self.attempt_id or self.tracer.new_id(),
                "parentId": self.span_id,
                "name": "attempt",
                "kind": "CLIENT",
                "timestamp": int(started * 1e6),
                "duration": max(1, int((ended - started) * 1e6)),
                "localEndpoint": self.tracer.local,
                "remoteEndpoint": self.tracer.endpoint(node),
                "tags": tags,
            }
        )
        self.attempt_id = ""

    def ended(
        self,
        node: str,
        attempt: int,
        status: int,
        outcome: str,
        arrived: float,
        started: float,
        answered: float | None,
        ended: float,
        error: str | None,
    ) -> None:
        """The call ended: close the answering attempt's span, then the call's; hand both on."""
        if node and self.attempt_id:
            self.attempt_ended(node, status, "answered" if error is None else error, started, ended)
            self.attempts[-1]["tags"]["fnlb.routing"] = outcome  # the decision that reached it
        request = self.request
        tags = {
            "http.method": request.method,
            "http.path": request.path,
            "http.status_code": str(status),
            "fnlb.routing": outcome,
            "fnlb.attempts": str(len(self.attempts)),
        }
        if node:
            tags["fnlb.node"] = node
        if error is not None:
            tags["error"] = error
        elif status >= 500:
            tags["error"] = str(status)
        begin = arrived
        span: Span = {
            "traceId": self.trace_id,
            "id": self.span_id,
            "name": request.method.lower(),
            "kind": "SERVER",
            "timestamp": int(begin * 1e6),
            "duration": max(1, int((ended - begin) * 1e6)),
            "localEndpoint": self.tracer.local,
            "tags": tags,
        }
        if self.parent_id:
            span["parentId"] = self.parent_id
        if request.remote:
            span["remoteEndpoint"] = _ip_endpoint(request.remote)
        self.tracer.sink.add([span, *self.attempts])


def _endpoint(node: str) -> dict[str, Any]:
    host, _, port = node.rpartition(":")
    out = _ip_endpoint(host.strip("[]"))
    out["serviceName"] = "fn"
    if port.isdigit():
        out["port"] = int(port)
    return out


def _ip_endpoint(host: str) -> dict[str, Any]:
    if ":" in host:
        return {"ipv6": host}
    if host.replace(".", "").isdigit():
        return {"ipv4": host}
    return {"serviceName": host}
