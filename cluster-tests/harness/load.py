"""The bounded load client: calls through fnlb from a client Host, and what each call saw.

It runs as a subprocess inside a Host (`python -m harness.load ...`), so its connections come
from a real address on the test network, and writes one JSON file when it ends. It is bounded
twice: at most `count` calls and none started after `deadline` seconds (each call also has
its own `timeout`), so a broken cluster cannot hang a test. Every call records its start and
end on the machine-wide monotonic clock (CLOCK_MONOTONIC is shared by all processes), so a
scenario can sort calls by when a fault began: "calls started after the kill saw no error".

While it runs it rewrites a small progress file (calls finished so far), so a scenario can
strike "under load" after a given number of calls rather than after a guessed sleep.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from harness.netns import Host
    from harness.procs import Process

#: the header the Fn node emulator names itself in
NODE_HEADER = "Fnsim-Node"
COLD_HEADER = "Fnsim-Cold"


@dataclass(frozen=True, slots=True)
class Call:
    """One call as the client saw it. Times are time.monotonic() seconds (machine-wide)."""

    i: int
    path: str
    start: float
    end: float
    status: int | None  # None: no HTTP response at all
    node: str | None  # the Fnsim-Node header of the answer
    error: str | None  # transport error (refused, reset, timeout), None if a response came

    @property
    def latency(self) -> float:
        return self.end - self.start

    @property
    def ok(self) -> bool:
        return self.error is None and self.status is not None and 200 <= self.status < 300


@dataclass(slots=True)
class LoadResult:
    """Every call of one load run, with the questions scenarios ask of them."""

    calls: list[Call]
    began: float
    ended: float
    config: dict[str, Any] = field(default_factory=dict)

    def errors(self) -> list[Call]:
        return [c for c in self.calls if not c.ok]

    def started_after(self, t: float) -> list[Call]:
        return [c for c in self.calls if c.start >= t]

    def ended_before(self, t: float) -> list[Call]:
        return [c for c in self.calls if c.end < t]

    def in_flight_at(self, t: float) -> list[Call]:
        return [c for c in self.calls if c.start < t <= c.end]

    def by_node(self, calls: Iterable[Call] | None = None) -> Counter[str]:
        return Counter(c.node or "-" for c in (self.calls if calls is None else calls) if c.ok)

    def latency_quantile(self, q: float, calls: Sequence[Call] | None = None) -> float:
        """The q-quantile (0..1) of latency of the successful calls, seconds; 0 if none."""
        lat = sorted(c.latency for c in (self.calls if calls is None else calls) if c.ok)
        if not lat:
            return 0.0
        return lat[min(len(lat) - 1, int(q * len(lat)))]  # nearest rank

    def summary_line(self, scenario: str, **extra: object) -> str:
        """The one line each scenario prints: calls, errors, latency, nodes, and `extra`."""
        nodes = ",".join(f"{n}:{k}" for n, k in sorted(self.by_node().items()))
        parts = [
            f"SCENARIO {scenario}:",
            f"calls={len(self.calls)}",
            f"errors={len(self.errors())}",
            f"p50={self.latency_quantile(0.5) * 1000:.0f}ms",
            f"p99={self.latency_quantile(0.99) * 1000:.0f}ms",
            f"max={max((c.latency for c in self.calls), default=0.0) * 1000:.0f}ms",
            f"nodes={nodes or '-'}",
        ]
        for key, value in extra.items():
            text = f"{value:.2f}s" if isinstance(value, float) else str(value)
            parts.append(f"{key}={text}")
        return " ".join(parts)

    def error_kinds(self, calls: Iterable[Call] | None = None) -> Counter[str]:
        """How many failed calls (of `calls`, default all) failed in each way."""
        pool = self.calls if calls is None else calls
        return Counter(c.error or f"HTTP {c.status}" for c in pool if not c.ok)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LoadResult:
        return cls(
            calls=[Call(**c) for c in data["calls"]],
            began=data["began"],
            ended=data["ended"],
            config=data.get("config", {}),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "began": self.began,
            "ended": self.ended,
            "config": self.config,
            "calls": [asdict(c) for c in self.calls],
        }


@dataclass(frozen=True, slots=True)
class LoadConfig:
    target: str  # host:port of the fnlb traffic listener
    paths: tuple[str, ...]  # cycled: call i uses paths[i % len(paths)]
    count: int  # at most this many calls
    deadline: float  # seconds: no call starts later than this after the start
    concurrency: int = 8  # calls in flight at once
    timeout: float = 10.0  # seconds for one call, connect to last byte
    rate: float = 0.0  # calls per second in total (0: as fast as `concurrency` allows)
    method: str = "GET"  # POST sends a small JSON body, as an Fn invocation does


def _describe(e: BaseException) -> str:
    text = str(e).strip().splitlines()[0] if str(e).strip() else ""
    return f"{type(e).__name__}: {text}"[:200] if text else type(e).__name__


async def run_load(cfg: LoadConfig, progress: Path | None = None) -> LoadResult:
    """Make the calls `cfg` describes; every call's outcome, never an exception."""
    import aiohttp  # only the subprocess needs it; importing the module stays cheap

    calls: list[Call] = []
    began = time.monotonic()
    stop_at = began + cfg.deadline
    next_index = 0
    timeout = aiohttp.ClientTimeout(total=cfg.timeout)
    body = b'{"x":1}' if cfg.method == "POST" else None

    def take() -> int | None:
        nonlocal next_index
        if next_index >= cfg.count or time.monotonic() >= stop_at:
            return None
        next_index += 1
        return next_index - 1

    async def one(session: aiohttp.ClientSession, i: int) -> Call:
        path = cfg.paths[i % len(cfg.paths)]
        url = f"http://{cfg.target}{path}"
        start = time.monotonic()
        status: int | None = None
        node: str | None = None
        error: str | None = None
        try:
            async with session.request(cfg.method, url, data=body, timeout=timeout) as resp:
                status = resp.status
                node = resp.headers.get(NODE_HEADER)
                await resp.read()
        except (aiohttp.ClientError, TimeoutError, OSError) as e:
            error = _describe(e)
        return Call(i, path, start, time.monotonic(), status, node, error)

    async def worker(session: aiohttp.ClientSession) -> None:
        while (i := take()) is not None:
            if cfg.rate > 0:
                due = began + i / cfg.rate
                delay = due - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                if time.monotonic() >= stop_at:
                    return
            calls.append(await one(session, i))

    async def report() -> None:
        assert progress is not None
        while True:
            _write_atomic(progress, json.dumps({"done": len(calls)}))
            await asyncio.sleep(0.1)

    connector = aiohttp.TCPConnector(limit=cfg.concurrency)
    reporter = asyncio.create_task(report()) if progress else None
    try:
        async with aiohttp.ClientSession(connector=connector) as session:
            async with asyncio.timeout(cfg.deadline + cfg.timeout + 5):
                await asyncio.gather(*(worker(session) for _ in range(cfg.concurrency)))
    finally:
        if reporter:
            reporter.cancel()
    if progress:
        _write_atomic(progress, json.dumps({"done": len(calls)}))
    calls.sort(key=lambda c: c.i)
    return LoadResult(calls, began, time.monotonic(), asdict(cfg))


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


class LoadRun:
    """A load client running in a Host; `result()` waits for it and parses its calls."""

    def __init__(self, proc: Process, out: Path, progress: Path, cfg: LoadConfig) -> None:
        self.proc = proc
        self.out = out
        self.progress = progress
        self.cfg = cfg

    def done_so_far(self) -> int:
        try:
            return int(json.loads(self.progress.read_text())["done"])
        except (FileNotFoundError, ValueError, KeyError):
            return 0

    def wait_progress(self, calls: int, *, timeout: float = 30.0) -> None:
        """Block until at least `calls` calls have finished (the load is really on)."""
        deadline = time.monotonic() + timeout
        while self.done_so_far() < calls:
            if not self.proc.alive():
                raise RuntimeError(f"load client exited early:\n{self.proc.log_tail()}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"load made {self.done_so_far()}/{calls} calls in {timeout} s")
            time.sleep(0.05)

    def result(self) -> LoadResult:
        rc = self.proc.wait(self.cfg.deadline + self.cfg.timeout + 30)
        if rc != 0 or not self.out.exists():
            raise RuntimeError(f"load client failed (exit {rc}):\n{self.proc.log_tail()}")
        return LoadResult.from_json(json.loads(self.out.read_text()))


def start_load(
    client: Host,
    target: str,
    paths: Sequence[str],
    *,
    count: int,
    deadline: float,
    concurrency: int = 8,
    timeout: float = 10.0,
    rate: float = 0.0,
    method: str = "GET",
    name: str = "load",
) -> LoadRun:
    """Start the load client in Host `client` against fnlb at `target` (ip:port)."""
    from harness.procs import python_argv

    cfg = LoadConfig(target, tuple(paths), count, deadline, concurrency, timeout, rate, method)
    out = client.network.workdir / f"{name}.json"
    progress = client.network.workdir / f"{name}.progress"
    argv = python_argv(
        "harness.load",
        "--target", target,
        "--count", str(count),
        "--deadline", str(deadline),
        "--concurrency", str(concurrency),
        "--timeout", str(timeout),
        "--rate", str(rate),
        "--method", method,
        "--out", str(out),
        "--progress", str(progress),
        *(arg for p in paths for arg in ("--path", p)),
    )  # fmt: skip
    return LoadRun(client.spawn(argv, name=name), out, progress, cfg)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness.load", description=__doc__)
    parser.add_argument("--target", required=True, help="fnlb traffic address ip:port")
    parser.add_argument("--path", action="append", required=True, help="path to call (cycled)")
    parser.add_argument("--count", type=int, required=True, help="at most this many calls")
    parser.add_argument("--deadline", type=float, required=True, help="seconds to start calls")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds per call")
    parser.add_argument("--rate", type=float, default=0.0, help="calls/s in total, 0: unpaced")
    parser.add_argument("--method", choices=("GET", "POST"), default="GET")
    parser.add_argument("--out", type=Path, required=True, help="JSON results file")
    parser.add_argument("--progress", type=Path, help="file rewritten with calls done so far")
    args = parser.parse_args(argv)
    if args.count < 1 or args.concurrency < 1 or args.deadline <= 0 or args.timeout <= 0:
        parser.error("count and concurrency must be >= 1, deadline and timeout > 0")
    cfg = LoadConfig(
        args.target,
        tuple(args.path),
        args.count,
        args.deadline,
        args.concurrency,
        args.timeout,
        args.rate,
        args.method,
    )
    result = asyncio.run(run_load(cfg, args.progress))
    _write_atomic(args.out, json.dumps(result.to_json()))
    print(result.summary_line("load"), file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
