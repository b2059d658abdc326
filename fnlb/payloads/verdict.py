"""Gossip payload: one peer's health verdict on one node (kind "v" of the cluster envelope).

Schema version 1 (implicit: a new shape gets a new kind): `["v", peer, node, online, stamp]`,
`stamp` an integer that orders one peer's own verdicts (its HLC stamp, `verdict_stamp`). The
same four fields, without the kind, are the verdicts of a push-pull full state
(fnlb.payloads.full_state). `check_verdict` refuses anything else (`bad_verdict`).
"""

from __future__ import annotations

from typing import Any, Final

from fnlb.errors import RemoteProtocolError
from fnlb.payloads.envelope import VERDICT, pack

MAX_PEER_NAME: Final = 255


def verdict_stamp(wall_ms: int, logical: int) -> int:
    """An HLC stamp as one integer that orders like the stamp (for one peer's verdicts)."""
    return (wall_ms << 20) | min(logical, 0xFFFFF)


def stamp_wall_ms(stamp: int) -> int:
    """The wall-clock ms of a verdict stamp."""
    return stamp >> 20


def verdict_message(peer: str, node: str, online: bool, stamp: int) -> bytes:
    return pack([VERDICT, peer, node, online, stamp])


def check_verdict(peer: Any, node: Any, online: Any, stamp: Any) -> tuple[str, str, bool, int]:
    """The verdict's fields, typed; RemoteProtocolError("bad_verdict") when malformed."""
    if not (
        isinstance(peer, str)
        and 0 < len(peer) <= MAX_PEER_NAME
        and isinstance(node, str)
        and isinstance(online, bool)
        and isinstance(stamp, int)
        and stamp >= 0
    ):
        raise RemoteProtocolError("bad_verdict", "malformed verdict")
    return peer, node, online, stamp
