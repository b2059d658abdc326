"""Logs: logfmt text or JSON lines on standard error, the level from LOG_LEVEL.

fnlb logs through the standard library's `logging` (aiohttp and our modules alike); the
lines are rendered by structlog's `ProcessorFormatter`, a well-kept library that quotes and
escapes logfmt values and writes JSON, instead of a formatter of our own. Every line has
`time` (RFC 3339, milliseconds and zone offset), `level`, `logger`, `msg`, then the record's
`extra` fields; fields whose value is None are left out. The password of any URL in a
line is replaced by `***` (fnlb.redact) after rendering, whatever field it came in.

`LOG_LEVEL` takes the original's logrus names as well: `trace` (more than debug), `warn`,
`fatal` and `panic` (both: only critical lines).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from datetime import datetime
from typing import Any, Final

import structlog

from fnlb.redact import redact_urls

TRACE: Final = 5
"""Below DEBUG: what logrus calls trace."""
LEVELS: Final = {
    "trace": TRACE,
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warn": logging.WARNING,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "fatal": logging.CRITICAL,
    "panic": logging.CRITICAL,
}
FORMATS: Final = ("text", "json")
_ORDER: Final = ["time", "level", "logger", "msg"]

EventDict = MutableMapping[str, Any]


def _from_record(_: Any, __: str, event: EventDict) -> EventDict:
    """time, level, logger and `msg` first (from the stdlib record), then the extra fields."""
    record: logging.LogRecord = event["_record"]
    stamp = datetime.fromtimestamp(record.created).astimezone()
    out: EventDict = {
        "time": stamp.isoformat(timespec="milliseconds"),
        "level": "trace" if record.levelno <= TRACE else record.levelname.lower(),
        "logger": record.name,
        "msg": event.pop("event"),
    }
    out.update((k, v) for k, v in event.items() if v is not None)
    if record.exc_info:
        out["exc_info"] = record.exc_info
    return out


def formatter(fmt: str) -> logging.Formatter:
    """The formatter for `-log-format` `fmt` (text or json)."""
    render: Any
    if fmt == "json":
        render = structlog.processors.JSONRenderer(sort_keys=False)
    elif fmt == "text":
        render = structlog.processors.LogfmtRenderer(key_order=_ORDER, bool_as_flag=False)
    else:
        raise ValueError(f"log format {fmt!r} is not one of {', '.join(FORMATS)}")

    def renderer(logger: Any, name: str, event: EventDict) -> str:
        # Passwords in URLs (a -db URL, a node or peer URL in an error) never reach a log.
        return redact_urls(render(logger, name, event))

    return structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[structlog.stdlib.ExtraAdder()],
        processors=[
            _from_record,
            structlog.processors.format_exc_info,
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            renderer,
        ],
    )


def setup_logging(level: str, fmt: str = "text") -> None:
    """Log to standard error at `level` (a LOG_LEVEL name) in format `fmt`."""
    logging.addLevelName(TRACE, "TRACE")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter(fmt))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(LEVELS[level.lower()])
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
