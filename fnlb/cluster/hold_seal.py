"""The seal on a write ack (`POST /1/lb/cluster/hold`): only key holders ask, only they answer.

Why (issue #12): the hold was unauthenticated msgpack over plain HTTP even when gossip was
encrypted, so anyone who could reach a management port injected node-set changes, and
anyone on the path could answer "held" for a peer that held nothing.

With a gossip key, the request body is one gossip envelope (fnlb.gossip.crypto) sealed *to*
the peer asked (its member name), so it opens only there, once (the cipher's replay window),
and only within the clock window; the answer carries `seal`, an envelope bound to that request
(`reply_to` its nonce) holding b"held", which the writer opens before it counts the peer.
Without a key (--gossip-insecure) nothing here applies: the body is the bare msgpack change and
nothing protects it, exactly as before; docs/security.md says so.

No asyncio or sockets here: bytes and `now` in, bytes out; callers do the HTTP.
"""

from __future__ import annotations

import base64
import binascii

from fnlb.errors import RemoteProtocolError
from fnlb.gossip.crypto import GossipCipher, Opened

HELD = b"held"
CONTENT_TYPE_SEALED = "application/x-fnlb-sealed"
CONTENT_TYPE_PLAIN = "application/msgpack"


def seal_request(cipher: GossipCipher, change: bytes, now: float, to: str) -> tuple[bytes, bytes]:
    """The body asking peer `to` to hold `change`, and the nonce its answer must be bound to."""
    if not cipher.encrypted:
        return change, b""
    body = cipher.seal(change, now, to=to)
    return body, GossipCipher.nonce_of(body)


def open_request(cipher: GossipCipher, body: bytes, now: float) -> Opened:
    """The change a peer asks us to hold; RemoteProtocolError(reason) unless a key holder
    sealed it for us within the window and it was not seen before."""
    if not cipher.encrypted:
        return Opened(body, None, None)
    return cipher.open_detailed(body, now)


def seal_answer(cipher: GossipCipher, request: Opened, now: float) -> str | None:
    """`seal` for a 200 answer: b"held" bound to the request (None without a key)."""
    if not cipher.encrypted:
        return None
    return base64.b64encode(cipher.seal(HELD, now, reply_to=request.nonce)).decode()


def answer_holds(cipher: GossipCipher, seal: object, nonce: bytes, now: float) -> bool:
    """True if `seal` (from a 200 answer) proves the peer asked held the change we sent."""
    if not cipher.encrypted:
        return True
    if not isinstance(seal, str):
        return False
    try:
        sealed = base64.b64decode(seal, validate=True)
        return cipher.open(sealed, now, reply_to=nonce) == HELD
    except (binascii.Error, ValueError, RemoteProtocolError):
        return False
