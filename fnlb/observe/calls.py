"""Per-call figures for `/metrics` and the dashboard, and the hooks the proxy calls.

The proxy calls `CallObserver.attempt` when an attempt did not answer the call (the call
moves on or fails), and `CallObserver.end` once when the call ends, with what the client
got. Both take the attempt's record (fnlb.routing.attempt) the proxy hands the Peer, so the
wait header and the answer time are read once per attempt, for routing and here alike. Both
run on the request path, so they keep plain ints in records made once per node: no lock (one
event loop thread writes and reads them), no await, no allocation after a node's first call.
The Prometheus collector (fnlb.observe.prom) reads them at scrape time.

What `/1/lb/stats` and the load figures already count (calls per second per function and
node, in flight, the decayed wait) stays in `fnlb.cluster.load.LocalLoad`; this module counts
only what nothing else does: totals by status class and routing outcome, latency
histograms, retries by reason, and fnlb's own error answers.

Routing outcome of an answered call: `home` (the first node of the function's order: its
placed home, or the rendezvous/jump-hash first), `spread` (another node of its hot set),
`spill` (a node beyond the hot set: the hot set was full or avoided, or the classic walk
moved on), `retry` (an earlier attempt failed and the call moved on), `none` (no node was
tried). The first three are what the router reported when it picked the call's first node
(fnlb.routing.picked: the proxy reads it right after `candidates` and hands it to `end`).
"""

from __future__ import annotations

import time
from bisect import bisect_left
from collections.abc import Collection
from typing import TYPE_CHECKING, Any, Final, Protocol

from fnlb.observe.histogram import LATENCY_BUCKETS_S, Histogram
from fnlb.routing.picked import Picks

if TYPE_CHECKING:
    from fnlb.observe.access import AccessLog
    from fnlb.observe.tracing import CallTrace, Tracer
    from fnlb.routing.attempt import Attempt

STATUS_CLASSES: Final = ("1xx", "2xx", "3xx", "4xx", "5xx")
OUTCOMES: Final = ("home", "spread", "spill", "retry", "none")
"""Indexed by HOME, SPREAD, SPILL (fnlb.routing.picked), RETRY and NONE."""
RETRY: Final = 3
NONE: Final = 4
RETRY_REASONS: Final = ("connect", "busy", "disconnect")
"""Why an attempt moved the call to the next node: the connection could not be opened, the
node answered 503 busy before the call started, or it closed the connection before any
answer to an idempotent call."""
ERROR_REASONS: Final = ("no_node", "all_failed", "failed_after_start", "client_gone")
HOLD_OUTCOMES: Final = ("released", "expired", "gone", "drained")
"""How a call held by wait for warm (-warm-wait, fnlb.proxy.warm_hold) stopped waiting: a
finishing call freed a container, its deadline came, its client left, shutdown."""
"""Why fnlb answered a call itself: no node was routable (503), every node tried failed before
the call started (502), the node failed after the call may have started (502, never resent),
or the client went away (499, logged only)."""
NO_NODE_LABEL: Final = "none"
"""The `node` label of calls that no node was tried for."""
NO_NODE, ALL_FAILED, AFTER, GONE = ERROR_REASONS
_RETRY_INDEX: Final = {reason: i for i, reason in enumerate(RETRY_REASONS)}
_CLASS_AT: Final = tuple(
    (c - 1 if 1 <= c <= 5 else 4) * len(OUTCOMES) for c in (s // 100 for s in range(1000))
)
"""A status' offset in `NodeCalls.calls` (its class x the outcomes): one index a call, no
arithmetic; statuses outside 100-599 count as 5xx, as `cls` did."""
_B0, _B1 = LATENCY_BUCKETS_S[:2]


class HeaderLookup(Protocol):
    def get(self, name: str, /) -> str | None:
        """A request header's value by case-insensitive name; None when absent."""
        ...


class CallRequest(Protocol):
    """What the observer reads of a call's request, only for traces and the access log:
    aiohttp's `web.BaseRequest` fits, and so can a data plane's own call record."""

    @property
    def method(self) -> str: ...

    @property
    def path(self) -> str: ...

    @property
    def remote(self) -> str | None: ...

    @property
    def headers(self) -> HeaderLookup: ...


class NodeCalls:
    """One node's counters; `calls[class * len(OUTCOMES) + outcome]`."""

    __slots__ = ("calls", "duration", "first_byte", "retries", "wait")

    def __init__(self) -> None:
        self.calls = [0] * (len(STATUS_CLASSES) * len(OUTCOMES))
        self.duration = Histogram()
        """Whole call: from the request's arrival to the answer's last byte (or fnlb's error)."""
        self.first_byte = Histogram()
        """Upstream: from sending the call to the answer's headers."""
        self.wait = Histogram()
        """Wait to start, from the `Xxx-Fxlb-Wait` answer header (only answers that carry it)."""
        self.retries = [0] * len(RETRY_REASONS)


class CallObserver:
    """The proxy's one observer: counters always (unless off), access log and traces opt-in."""

    __slots__ = ("access", "counting", "errors", "hold_s", "holds", "nodes", "routed", "tracer")

    def __init__(
        self,
        routed: Picks,
        *,
        counting: bool = True,
        access: AccessLog | None = None,
        tracer: Tracer | None = None,
    ) -> None:
        self.routed = routed
        """What reports the routing outcome of each pick (fnlb.observe.outcome.outcome_for):
        the proxy reads its `picked` right after `candidates` and passes it to `end`."""
        self.counting = counting
        self.access = access
        self.tracer = tracer
        self.nodes: dict[str, NodeCalls] = {}
        self.errors = dict.fromkeys(ERROR_REASONS, 0)
        self.holds = dict.fromkeys(HOLD_OUTCOMES, 0)
        """Calls wait for warm held, by how the hold ended (HOLD_OUTCOMES)."""
        self.hold_s = 0.0
        """Seconds those calls were held, in all."""

    # -- the request path --------------------------------------------------------------

    def begin(
        self, request: CallRequest, headers: list[tuple[str, str]] | None
    ) -> CallTrace | None:
        """A call starts; its trace when tracing is on (the proxy skips the call otherwise).

        Appends `traceparent` (and keeps `tracestate`) in `headers`, the node's request; with
        None, the data plane adds `CallTrace.propagation()` to each attempt's request itself
        (fnlb.observe.tracing.Tracer.begin)."""
        tracer = self.tracer
        return None if tracer is None else tracer.begin(request, headers)

    def attempt(
        self, trace: CallTrace | None, attempt: Attempt, reason: str, started: float, retried: bool
    ) -> None:
        """An attempt did not answer the call: `attempt` is the record the Peer got,
        `reason` one of RETRY_REASONS, `started` when it was sent, `retried` when the call
        moves on to the next node."""
        if retried and self.counting:
            rec = self.nodes.get(attempt.node)
            if rec is None:
                rec = self._new_node(attempt.node)
            rec.retries[_RETRY_INDEX[reason]] += 1
        if trace is not None:
            trace.attempt_ended(attempt.node, attempt.status, reason, started, attempt.ended)

    def end(
        self,
        trace: CallTrace | None,
        request: CallRequest,
        key: str,
        picked: int,
        attempt: Attempt | None,
        index: int,
        status: int,
        arrived: float,
        started: float,
        error: str | None = None,
    ) -> None:
        """The call ended: `status` is what the client got; `picked` what routing reported
        for its first node (fnlb.routing.picked); `attempt` the record of its last attempt as
        the Peer got it (None when no node was tried), `index` that attempt's place in the
        call, `started` when it was sent; `error` one of ERROR_REASONS when fnlb answered
        itself. Its answer time, upstream time and wait are read from the record, so nothing
        the proxy parsed is parsed again."""
        if attempt is not None and self.counting:
            # The path nearly every call takes, kept to what it must do (#14: under 5 % of a
            # call): one dict lookup, precomputed indexes, histogram buckets by comparing
            # with the two lowest bounds first (a call through loopback falls there).
            node = attempt.node
            rec = self.nodes.get(node)
            if rec is None:
                rec = self._new_node(node)
            outcome = RETRY if index else picked
            try:
                rec.calls[_CLASS_AT[status] + outcome] += 1
            except IndexError:  # a status over 999 (never from llhttp or fnlb)
                rec.calls[20 + outcome] += 1
            ended = attempt.ended
            took = ended - arrived
            h = rec.duration
            h.counts[0 if took <= _B0 else 1 if took <= _B1 else bisect_left(h.bounds, took)] += 1
            h.sum += took
            answer_s = attempt.answer_s
            if answer_s is not None:
                h = rec.first_byte
                h.counts[
                    0
                    if answer_s <= _B0
                    else 1
                    if answer_s <= _B1
                    else bisect_left(h.bounds, answer_s)
                ] += 1
                h.sum += answer_s
            wait = attempt.wait_s
            if wait is not None:
                rec.wait.observe(wait)
            if error is not None:
                self.errors[error] += 1
            if trace is None and self.access is None:
                return
        elif not self.counting and trace is None and self.access is None:
            return  # everything off: the proxy's call costs this test only
        elif attempt is None and self.counting:
            rec = self.nodes.get(NO_NODE_LABEL)
            if rec is None:
                rec = self._new_node(NO_NODE_LABEL)
            rec.calls[_class_offset(status) + NONE] += 1
            rec.duration.observe(time.time() - arrived)
            if error is not None:
                self.errors[error] += 1
        self._report(trace, request, key, picked, attempt, index, status, arrived, started, error)

    def _report(
        self,
        trace: CallTrace | None,
        request: CallRequest,
        key: str,
        picked: int,
        attempt: Attempt | None,
        index: int,
        status: int,
        arrived: float,
        started: float,
        error: str | None,
    ) -> None:
        """`end`'s trace and access log (the counters are done)."""
        if attempt is None:
            node = ""
            outcome = NONE
            answered = answer_s = wait = None
            ended = time.time()
        else:
            node = attempt.node
            outcome = RETRY if index else picked
            answered = attempt.answered_at
            answer_s = attempt.answer_s
            wait = attempt.wait_s
            ended = attempt.ended
        if trace is not None:
            trace.ended(
                node, index, status, OUTCOMES[outcome], arrived, started, answered, ended, error
            )
        if self.access is not None:
            self._log(trace, request, key, node, index, status, outcome, arrived, answer_s,
                      ended, wait)  # fmt: skip

    def held(self, outcome: str, seconds: float) -> None:
        """A call held by wait for warm stopped waiting after `seconds` (HOLD_OUTCOMES)."""
        self.holds[outcome] += 1
        self.hold_s += seconds

    # -- off the request path ----------------------------------------------------------

    def _new_node(self, node: str) -> NodeCalls:
        rec = self.nodes[node] = NodeCalls()
        return rec

    def forget(self, node: str) -> None:
        """Drop a node's counters (it left the list): its series end, memory stays bounded."""
        self.nodes.pop(node, None)

    def snapshot(self) -> list[Any]:
        """Every figure as plain lists and dicts, as a worker process reports them to its
        primary (fnlb.proxy.worker_link): `[{node: [calls, duration counts, duration sum,
        first-byte counts, first-byte sum, wait counts, wait sum, retries]}, errors, holds,
        hold seconds]`."""
        nodes = {
            node: [
                list(rec.calls),
                list(rec.duration.counts),
                rec.duration.sum,
                list(rec.first_byte.counts),
                rec.first_byte.sum,
                list(rec.wait.counts),
                rec.wait.sum,
                list(rec.retries),
            ]
            for node, rec in self.nodes.items()
        }
        return [nodes, dict(self.errors), dict(self.holds), self.hold_s]

    def add(self, snapshot: list[Any]) -> None:
        """Add another observer's `snapshot` to these figures (ValueError when malformed)."""
        try:
            nodes, errors, *held = snapshot  # an older worker's has no holds
            for node, (calls, d, d_sum, f, f_sum, w, w_sum, retries) in nodes.items():
                rec = self.nodes.get(node) or self._new_node(node)
                _add_counts(rec.calls, calls)
                for hist, counts, total in (
                    (rec.duration, d, d_sum),
                    (rec.first_byte, f, f_sum),
                    (rec.wait, w, w_sum),
                ):
                    _add_counts(hist.counts, counts)
                    hist.sum += float(total)
                _add_counts(rec.retries, retries)
            for reason, n in errors.items():
                if reason in self.errors:
                    self.errors[reason] += int(n)
            if held:
                holds, hold_s = held
                for outcome, n in holds.items():
                    if outcome in self.holds:
                        self.holds[outcome] += int(n)
                self.hold_s += float(hold_s)
        except (TypeError, ValueError, AttributeError) as e:
            raise ValueError(f"not a call snapshot: {e}") from None

    def retain(self, known: Collection[str]) -> None:
        """Drop the counters of nodes not in `known` (scrape time): a call that was in flight
        to a node when it was deleted ends after `forget` and makes its record anew."""
        for node in [n for n in self.nodes if n not in known and n != NO_NODE_LABEL]:
            del self.nodes[node]

    def _log(
        self,
        trace: CallTrace | None,
        request: CallRequest,
        key: str,
        node: str,
        attempt: int,
        status: int,
        outcome: int,
        arrived: float,
        answer_s: float | None,
        ended: float,
        wait: float | None,
    ) -> None:
        assert self.access is not None
        self.access.write(
            ended,
            {
                "method": request.method,
                "path": request.path,
                "function": key,
                "node": node or None,
                "status": status,
                "attempts": attempt + 1 if node else 0,
                "routing": OUTCOMES[outcome],
                "duration_ms": _ms(ended - arrived),
                "first_byte_ms": _ms(answer_s) if answer_s is not None else None,
                "wait_ms": _ms(wait) if wait is not None else None,
                "trace_id": trace.trace_id if trace is not None else None,
                "remote": request.remote,
            },
        )


def _class_offset(status: int) -> int:
    try:
        return _CLASS_AT[status]
    except IndexError:
        return 4 * len(OUTCOMES)


def _add_counts(into: list[int], counts: list[Any]) -> None:
    if len(counts) != len(into):
        raise ValueError("counts of another shape")
    for i, n in enumerate(counts):
        into[i] += int(n)


class CallTotals:
    """What /metrics and the dashboard read: this process's observer, plus the figures the
    processes serving calls with it (`-workers N`, fnlb.proxy.workers) last reported. A
    worker that exits leaves its last figures behind, so no counter ever goes down."""

    def __init__(self, own: CallObserver) -> None:
        self.own = own
        self.reported: dict[int, list[Any]] = {}
        """Each live worker's last snapshot (`CallObserver.snapshot`), by worker index."""
        self._retired = CallObserver(own.routed)
        self._spans: dict[int, dict[str, int]] = {}
        self._retired_spans: dict[str, int] = {}

    def report(self, source: int, snapshot: list[Any], spans: dict[str, int] | None = None) -> None:
        """Worker `source`'s figures now, and its span exporter's counts (-zipkin);
        ValueError, and kept out, when malformed."""
        CallObserver(self.own.routed).add(snapshot)  # checks its shape, once a second
        if spans is not None:
            if not isinstance(spans, dict) or not all(
                isinstance(k, str) and isinstance(n, int) for k, n in spans.items()
            ):
                raise ValueError("not span counts")
            self._spans[source] = spans
        self.reported[source] = snapshot

    def retire(self, source: int) -> None:
        """Worker `source` exited: its last figures stay (a new one starts from zero)."""
        snapshot = self.reported.pop(source, None)
        if snapshot is not None:
            self._retired.add(snapshot)
        for result, n in self._spans.pop(source, {}).items():
            self._retired_spans[result] = self._retired_spans.get(result, 0) + n

    def worker_spans(self, result: str) -> int:
        """Spans of `result` (sent, dropped, failed) the workers' exporters counted."""
        live = sum(spans.get(result, 0) for spans in self._spans.values())
        return live + self._retired_spans.get(result, 0)

    def merged(self, known: Collection[str]) -> CallObserver:
        """The figures of every process, for nodes in `known` (and calls no node took);
        the observer itself when it serves every call."""
        own = self.own
        own.retain(known)
        if not self.reported and not self._retired.nodes:
            return own
        self._retired.retain(known)
        out = CallObserver(own.routed)
        for snapshot in (own.snapshot(), self._retired.snapshot(), *self.reported.values()):
            out.add(snapshot)
        out.retain(known)
        return out


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 3)
