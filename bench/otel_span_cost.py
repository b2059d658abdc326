"""What OpenTelemetry's SDK costs per traced call, next to fnlb.observe.tracing: the measure
behind choosing our own small Zipkin exporter (docs/observability.md).

Per call, both build what fnlb sends for one answered call: a SERVER span for the call and a
CLIENT span for its attempt, six and four attributes, a W3C `traceparent` for the node, and
hand the finished spans to a batching exporter that does not post (OTel: BatchSpanProcessor
with an exporter that drops; ours: the ZipkinExporter queue, encoded as it would be sent).
OpenTelemetry is not a dependency of fnlb: run this with it installed beside fnlb, e.g.

    python -m venv /tmp/otel && /tmp/otel/bin/pip install opentelemetry-sdk aiohttp msgpack \\
        prometheus-client structlog cryptography
    PYTHONPATH=. /tmp/otel/bin/python bench/otel_span_cost.py        # 20k calls x 5 rounds
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

CALLS = 20_000
ROUNDS = 5


def ours() -> Any:
    from aiohttp.test_utils import make_mocked_request

    from fnlb.observe.tracing import Tracer
    from fnlb.observe.zipkin import ZipkinExporter

    exporter = ZipkinExporter("http://127.0.0.1:9/api/v2/spans")
    tracer = Tracer(exporter)
    request = make_mocked_request("POST", "/r/app/fn", headers={"Host": "fnlb"})

    def one() -> None:
        now = time.time()
        headers: list[tuple[str, str]] = []
        trace = tracer.begin(request, headers)
        assert trace is not None
        trace.attempt_started("10.0.0.1:8080", now)
        trace.ended("10.0.0.1:8080", 0, 200, "home", now, now, now, now, None)
        if len(exporter._queue) > 250:
            exporter._queue.clear()
            exporter._queued = 0

    return one


def otel() -> Any:
    from opentelemetry import trace
    from opentelemetry.propagate import inject
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import (
        BatchSpanProcessor,
        SpanExporter,
        SpanExportResult,
    )

    class Drop(SpanExporter):
        def export(self, spans: Any) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(Drop()))
    tracer = provider.get_tracer("fnlb")

    def one() -> None:
        with tracer.start_as_current_span("post", kind=trace.SpanKind.SERVER) as call:
            call.set_attribute("http.method", "POST")
            call.set_attribute("http.path", "/r/app/fn")
            call.set_attribute("fnlb.routing", "home")
            with tracer.start_as_current_span("attempt", kind=trace.SpanKind.CLIENT) as attempt:
                headers: dict[str, str] = {}
                inject(headers)
                attempt.set_attribute("fnlb.node", "10.0.0.1:8080")
                attempt.set_attribute("fnlb.attempt", 0)
                attempt.set_attribute("fnlb.result", "answered")
                attempt.set_attribute("http.status_code", 200)
            call.set_attribute("fnlb.node", "10.0.0.1:8080")
            call.set_attribute("fnlb.attempts", 1)
            call.set_attribute("http.status_code", 200)

    return one


def main() -> int:
    makers = {"fnlb.observe.tracing + Zipkin queue": ours}
    try:
        import opentelemetry.sdk  # noqa: F401

        makers["OpenTelemetry SDK + BatchSpanProcessor"] = otel
    except ImportError:
        print("opentelemetry-sdk is not installed: only fnlb's own row (see the docstring)")
    fns = {name: make() for name, make in makers.items()}
    results: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(ROUNDS):
        for name, fn in fns.items():
            begin = time.process_time()
            for _ in range(CALLS):
                fn()
            results[name].append((time.process_time() - begin) / CALLS * 1e6)
    print(f"{CALLS:,} traced calls x {ROUNDS} interleaved rounds")
    print("| tracer | CPU µs per traced call (median) |")
    print("|---|---:|")
    for name, values in results.items():
        print(f"| {name} | {statistics.median(values):.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
