"""Log lines: logfmt text quoted properly or JSON, RFC 3339 times with milliseconds and zone,
LOG_LEVEL's logrus names, and the opt-in access log (one line per call)."""

from __future__ import annotations

import io
import json
import logging
import re
import sys
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest

from fnlb.logs import LEVELS, formatter, setup_logging
from fnlb.observe.access import AccessLog, Clock
from tests.observe.test_tracing_functional import TRACE, collector
from tests.support import Backend, running_balancer, wait_for

RFC3339_MS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}(Z|[+-]\d\d:\d\d)$")


@pytest.fixture
def root_restored() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def render(fmt: str, msg: str, **extra: object) -> str:
    record = logging.LogRecord("fnlb.test", logging.WARNING, __file__, 1, msg, (), None)
    record.__dict__.update(extra)
    return formatter(fmt).format(record)


def test_text_lines_quote_values_with_spaces_and_quotes() -> None:
    line = render("text", "node is offline", node="a:1", error='refused "now" = x', gone=None)
    assert re.match(r'^time=\S+ level=warning logger=fnlb\.test msg="node is offline" ', line)
    assert 'error="refused \\"now\\" = x"' in line
    assert "node=a:1" in line
    assert "gone" not in line  # None values are left out
    stamp = line.split(" ", 1)[0].removeprefix("time=")
    assert RFC3339_MS.match(stamp), stamp


def test_json_lines_are_one_object_with_time_first() -> None:
    line = render("json", "node is offline", node="a:1", attempts=2)
    obj = json.loads(line)
    assert list(obj)[:4] == ["time", "level", "logger", "msg"]
    assert obj["msg"] == "node is offline"
    assert (obj["node"], obj["attempts"]) == ("a:1", 2)
    assert RFC3339_MS.match(obj["time"])


def test_exceptions_are_one_field_of_one_line() -> None:
    try:
        raise ValueError("bad")
    except ValueError:
        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "boom", (), sys.exc_info())
    obj = json.loads(formatter("json").format(record))
    assert "ValueError: bad" in obj["exception"]


@pytest.mark.usefixtures("root_restored")
@pytest.mark.parametrize(
    ("level", "shown", "hidden"),
    [
        ("warn", logging.WARNING, logging.INFO),
        ("trace", 5, 4),
        ("fatal", logging.CRITICAL, logging.ERROR),
        ("panic", logging.CRITICAL, logging.ERROR),
    ],
)
def test_logrus_level_names(level: str, shown: int, hidden: int) -> None:
    setup_logging(level, "text")
    root = logging.getLogger()
    assert root.isEnabledFor(shown)
    assert not root.isEnabledFor(hidden)
    assert set(LEVELS) >= {"trace", "debug", "info", "warn", "warning", "error", "fatal", "panic"}


async def test_access_log_has_one_line_per_call_with_its_trace_id(
    capsys: pytest.CaptureFixture[str],
) -> None:
    backend = Backend("n")
    await backend.start()
    try:
        async with (
            collector() as zipkin,
            running_balancer(
                nodes=backend.address, access_log=True, log_format="json", zipkin=zipkin.url
            ) as lb,
        ):
            await wait_for(lambda: lb.peer.view.states.get(backend.address) == "online")
            headers = {"traceparent": f"00-{TRACE}-00f067aa0ba902b7-01"}
            async with (
                aiohttp.ClientSession() as client,
                client.put(f"http://{lb.listen_address}/r/app/fn?x=1", headers=headers) as r,
            ):
                assert r.status == 200
        # stopping writes what is buffered
    finally:
        await backend.stop()
    (entry,) = access_lines(capsys.readouterr().err)
    assert list(entry)[:4] == ["time", "level", "logger", "msg"]
    assert RFC3339_MS.match(entry["time"])
    assert (entry["method"], entry["path"], entry["function"]) == ("PUT", "/r/app/fn", "r/app/fn")
    assert (entry["node"], entry["status"], entry["attempts"]) == (backend.address, 200, 1)
    assert entry["routing"] == "home"
    assert entry["trace_id"] == TRACE
    assert entry["wait_ms"] == 1.5  # the backend's Xxx-Fxlb-Wait
    assert entry["duration_ms"] >= entry["first_byte_ms"] > 0


def access_lines(err: str) -> list[dict[str, Any]]:
    out = []
    for line in err.splitlines():
        if line.startswith("{"):
            obj = json.loads(line)
            if obj.get("logger") == "fnlb.access":
                out.append(obj)
    return out


async def test_no_access_log_unless_asked(capsys: pytest.CaptureFixture[str]) -> None:
    backend = Backend("n")
    await backend.start()
    try:
        async with running_balancer(nodes=backend.address, log_format="json") as lb:
            await wait_for(lambda: lb.peer.view.states.get(backend.address) == "online")
            async with (
                aiohttp.ClientSession() as client,
                client.get(f"http://{lb.listen_address}/r/app/fn") as r,
            ):
                assert r.status == 200
    finally:
        await backend.stop()
    assert "fnlb.access" not in capsys.readouterr().err


def test_access_lines_in_text_quote_values_and_clock_has_zone() -> None:
    out = io.StringIO()
    log = AccessLog("text", stream=out, max_lines=1)  # not started: writes through
    log.write(1765000000.25, {"path": "/r/a b", "node": None, "status": 200})
    line = out.getvalue().strip()
    assert re.match(
        r'^time=\S+ level=info logger=fnlb\.access msg=call path="/r/a b" status=200$', line
    )
    stamp = line.split(" ", 1)[0].removeprefix("time=")
    assert RFC3339_MS.match(stamp)
    assert ".250" in stamp
    assert Clock()(1765000000.999).split(".")[1][:3] == "999"
