"""The exceptions fnlb raises, split by who is to blame.

    FnlbError
    ├── ConfigError(FnlbError, ValueError)       bad flags, environment or settings: exit 2
    ├── BadRequest(FnlbError, ValueError)        a client sent something we refuse: HTTP 4xx
    ├── LocalProtocolError(FnlbError, RuntimeError)   we misused an API: a bug, raise
    └── RemoteProtocolError(FnlbError, ValueError)    a peer sent garbage: drop and count

Bad input from a client or a peer is answered or dropped, never allowed to crash a process.
"""

from __future__ import annotations


class FnlbError(Exception):
    """Base of every exception fnlb raises on purpose."""


class ConfigError(FnlbError, ValueError):
    """The settings cannot work; the message names the flag."""


class BadRequest(FnlbError, ValueError):
    """A client's request is invalid; `status` is the HTTP status to answer with."""

    def __init__(self, msg: str, status: int = 400) -> None:
        super().__init__(msg)
        self.msg = msg
        self.status = status


class LocalProtocolError(FnlbError, RuntimeError):
    """fnlb's own code used a state machine wrongly."""


class RemoteProtocolError(FnlbError, ValueError):
    """A peer sent bytes we cannot accept; `reason` is the counter it is dropped under."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
