"""Toxics as toxiproxy's HTTP API describes them: names, streams, toxicity, attributes.

A toxic is a description only; what it does to bytes is in `toxiproxy.Link`. The JSON shape is
toxiproxy's: `{"name", "type", "stream", "toxicity", "attributes": {...}}`, `stream` is
`upstream` (client to server) or `downstream` (server to client, the default), `toxicity` the
chance (0..1, default 1) that the toxic applies to a given connection, and a toxic's default
name is `<type>_<stream>`. Times are milliseconds, bandwidth KB/s, as in toxiproxy.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

#: toxic type -> its attributes and their defaults
TOXIC_ATTRIBUTES: dict[str, dict[str, float]] = {
    "latency": {"latency": 0, "jitter": 0},  # ms added to each chunk, +/- jitter ms
    "bandwidth": {"rate": 0},  # KB/s (1 KB = 1000 bytes); 0 = unlimited
    "slow_close": {"delay": 0},  # ms between the end of a stream and its close
    "timeout": {"timeout": 0},  # ms until the connection closes, data dropped; 0 = hold
    "reset_peer": {"timeout": 0},  # ms after the first data until a TCP RST
}

STREAMS = ("upstream", "downstream")


class ApiError(Exception):
    """A request toxiproxy's API refuses; `status` is the HTTP status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True, slots=True)
class Toxic:
    name: str
    type: str
    stream: str = "downstream"
    toxicity: float = 1.0
    attributes: dict[str, float] = field(default_factory=dict)

    def attr(self, key: str) -> float:
        return self.attributes.get(key, TOXIC_ATTRIBUTES[self.type][key])

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "type": self.type,
            "stream": self.stream,
            "toxicity": self.toxicity,
            "attributes": dict(self.attributes),
        }


def _number(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ApiError(400, f"{what} must be a number")
    if value < 0 or value != value:
        raise ApiError(400, f"{what} must not be negative")
    return value


def _attributes(kind: str, given: Any, base: dict[str, float]) -> dict[str, float]:
    if given is None:
        given = {}
    if not isinstance(given, dict):
        raise ApiError(400, "attributes must be an object")
    attrs = dict(base)
    for key, value in given.items():
        if key not in TOXIC_ATTRIBUTES[kind]:
            raise ApiError(400, f"unknown attribute {key!r} for toxic type {kind}")
        attrs[key] = _number(value, f"attribute {key}")
    return attrs


def toxic_from_json(body: Any) -> Toxic:
    """Validate a POST /proxies/{p}/toxics body into a Toxic with every attribute filled in."""
    if not isinstance(body, dict):
        raise ApiError(400, "bad request body: a JSON object is required")
    kind = body.get("type")
    if kind not in TOXIC_ATTRIBUTES:
        raise ApiError(400, f"invalid toxic type: {kind!r}")
    stream = body.get("stream") or "downstream"
    if stream not in STREAMS:
        raise ApiError(400, f"stream must be upstream or downstream, not {stream!r}")
    toxicity = _number(body.get("toxicity", 1.0), "toxicity")
    if toxicity > 1:
        raise ApiError(400, "toxicity must be between 0 and 1")
    name = body.get("name") or f"{kind}_{stream}"
    if not isinstance(name, str):
        raise ApiError(400, "name must be a string")
    attrs = _attributes(kind, body.get("attributes"), TOXIC_ATTRIBUTES[kind])
    return Toxic(name, kind, stream, float(toxicity), attrs)


def toxic_updated(toxic: Toxic, body: Any) -> Toxic:
    """Apply a POST /proxies/{p}/toxics/{t} body: toxicity and attributes may change."""
    if not isinstance(body, dict):
        raise ApiError(400, "bad request body: a JSON object is required")
    toxicity = toxic.toxicity
    if "toxicity" in body:
        toxicity = float(_number(body["toxicity"], "toxicity"))
        if toxicity > 1:
            raise ApiError(400, "toxicity must be between 0 and 1")
    attrs = _attributes(toxic.type, body.get("attributes"), toxic.attributes)
    return Toxic(toxic.name, toxic.type, toxic.stream, toxicity, attrs)
