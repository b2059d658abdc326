"""Seal and open gossip packets: AES-GCM with a keyring, a cluster label and a replay window.

Rule 1: no asyncio, socket, time or global random here. Rule 2: every input carries `now`
(Unix wall-clock seconds, the same clock on every peer up to the allowed skew); every output
is returned. Rule 3: any bytes a peer sends either open or raise `RemoteProtocolError` with a
short stable `reason` the runtime counts; nothing else escapes `GossipCipher.open`.

Theory of operation
-------------------
Every UDP datagram and every piece of a TCP stream message is one *envelope*::

    AES-GCM (version 0x03), 46 bytes of overhead:
      version   1 B   0x03
      label tag 4 B   first 4 bytes of SHA-256(cluster label): a cheap, early "wrong cluster"
      sent at   8 B   sender's wall clock, milliseconds since the Unix epoch, big-endian
      to kind   1 B   whom it is for: 0 any peer, 1 a named peer, 2 the sender of one request,
                      3 the continuation of one stream message (see below)
      to tag    4 B   a cheap, early "not for me": 4 bytes of a hash of the recipient's name
                      (kind 1), of the request's nonce (2), of the first piece's nonce (3)
      nonce    12 B   random per envelope (os.urandom unless a source is injected)
      ciphertext      as long as the plaintext
      tag      16 B   GCM authentication tag
    associated data = the 18 header bytes + the full UTF-8 cluster label + the binding: the
    recipient's full name (kind 1), the request's whole nonce (kind 2), the first piece's
    whole nonce and this piece's index (kind 3). Changing any header byte, opening under
    another cluster name, at another peer, as the answer to another request or as another
    piece of another message fails authentication even when a 4-byte tag collides.

Why the recipient is bound (version 3; version 2 had no "to"): a packet sealed for peer A
could be replayed to peer C inside the window, and C took it for its own (an Ack sealed for
A completed C's probe of a crashed member). A receiver now opens kind 1 only under its own
name, kind 2 only as the answer to a request it sent, kind 3 only inside the stream whose
first piece it opened. Kind 0 (any peer) is what a sender uses when it does not know the
name at an address: a join's first stream to a seed, an answer to a probe from an address
not in its member table. docs/gossip.md ("Threat model") says what that leaves open.

    plaintext (version 0x01, only with --gossip-insecure), 5 bytes of overhead:
      version   1 B   0x01
      label tag 4 B   as above: two insecure clusters with different names still never merge
      payload

The keyring holds every key the cluster may be using: the primary seals, all keys are tried
to open (primary first), which is what lets operators rotate keys without downtime: install
the new key everywhere, make it primary everywhere, remove the old one everywhere.

Replay window: after a packet authenticates, its `sent at` must lie within `window` seconds
of our `now` (else "stale" or "future"), and its nonce must not be among those accepted
earlier (else "replayed"). Remembered nonces are forgotten once their `sent at` falls out of
the window, since the window check alone then rejects the packet. Memory is bounded by
`max_remembered`: when full, the oldest entry is forgotten and every packet sent at or before
it is from then on refused as "stale" (a *floor* that only rises), so a bounded memory never
lets a replay through - at worst, under overload, it narrows the window. The floor also covers
a receiver whose clock steps backwards. The clock-skew assumption: peers' wall clocks agree
within `window` seconds (NTP gives milliseconds; the default 30 s tolerates a lot).
Plaintext mode has no replay protection: without a key anyone can forge a packet anyway.

Randomness: GCM needs each (key, nonce) pair to be unique, never predictable-by-seed, and
two peers sharing a key must never draw the same nonces - which a seeded `random.Random`
per peer could do. So nonces come from `os.urandom` (the kernel CSPRNG, not the global
`random` state); tests and simulations may inject their own `nonce_source`.
"""

from __future__ import annotations

import hashlib
import heapq
import os
import struct
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from fnlb.errors import LocalProtocolError, RemoteProtocolError

VERSION_PLAINTEXT = 0x01
VERSION_AESGCM_V2 = 0x02
"""The envelope before recipient binding: refused as `old_envelope` (see docs/gossip.md)."""
VERSION_AESGCM = 0x03

TO_ANY = 0
TO_NAME = 1
TO_REPLY = 2
TO_CONTINUATION = 3

KEY_SIZES = (16, 24, 32)
LABEL_TAG_SIZE = 4
TIMESTAMP_SIZE = 8
NONCE_SIZE = 12
TAG_SIZE = 16
TO_TAG_SIZE = 4
_HEADER = struct.Struct(">B4sQB4s")  # version, label tag, sent-at ms, to kind, to tag
HEADER_SIZE = _HEADER.size  # 18
PLAINTEXT_OVERHEAD = 1 + LABEL_TAG_SIZE  # 5
AESGCM_OVERHEAD = HEADER_SIZE + NONCE_SIZE + TAG_SIZE  # 46
_INDEX = struct.Struct(">I")
_NO_TAG = bytes(TO_TAG_SIZE)
#: the largest cluster label, in UTF-8 bytes
MAX_LABEL_BYTES = 255
#: a TCP push/pull state is at most 20 MiB; leave room for framing and the envelope.
DEFAULT_MAX_ENVELOPE = 20 * 1024 * 1024 + 4096
KEY_ID_HEX_CHARS = 12

#: the reasons `open` gives, each a counter the runtime keeps.
DROP_REASONS = (
    "too_short",
    "too_large",
    "bad_version",
    "old_envelope",
    "not_for_us",
    "encryption_mismatch",
    "label_mismatch",
    "auth_failed",
    "stale",
    "future",
    "replayed",
)

NonceSource = Callable[[int], bytes]
#: what `open` reads: the runtime may hand over a buffer it received into
Packet = bytes | bytearray | memoryview


def key_id(key: bytes) -> str:
    """A short fingerprint of a key, safe to show and log: 12 hex digits of a SHA-256.

    The hash is domain-separated so it cannot be mistaken for any other digest of the key;
    48 bits tell an operator's handful of keys apart and reveal nothing usable about them.
    """
    return hashlib.sha256(b"fnlb gossip key id\x00" + key).hexdigest()[:KEY_ID_HEX_CHARS]


def label_tag(label: str) -> bytes:
    """The 4 bytes on the wire that name a cluster (a hint; the full label is authenticated)."""
    return hashlib.sha256(label.encode()).digest()[:LABEL_TAG_SIZE]


def recipient_tag(name: str) -> bytes:
    """The 4 bytes on the wire that say which peer an envelope is for (kind 1)."""
    return hashlib.sha256(b"fnlb gossip recipient\x00" + name.encode()).digest()[:TO_TAG_SIZE]


def nonce_tag(nonce: bytes) -> bytes:
    """The 4 bytes on the wire that say which request or stream an envelope belongs to."""
    return hashlib.sha256(b"fnlb gossip nonce\x00" + nonce).digest()[:TO_TAG_SIZE]


def check_key(key: bytes) -> bytes:
    """Return `key` if it is an AES key (16, 24 or 32 bytes); raise LocalProtocolError if not."""
    if not isinstance(key, bytes | bytearray) or len(key) not in KEY_SIZES:
        size = len(key) if isinstance(key, bytes | bytearray) else type(key).__name__
        raise LocalProtocolError(f"an AES key is 16, 24 or 32 bytes, not {size}")
    return bytes(key)


class Keyring:
    """The keys a peer accepts: all of them open packets, the primary (first) seals them.

    Mutations are for online rotation; the order of `keys()` is primary first, then the
    others in the order they were installed, which is also the order they are tried in.
    """

    def __init__(self, keys: Iterable[bytes]) -> None:
        self._keys: list[bytes] = []
        self._aead: dict[bytes, AESGCM] = {}
        self._ids: dict[bytes, str] = {}
        for key in keys:
            self.install(key)
        if not self._keys:
            raise LocalProtocolError("a keyring needs at least one key")

    @property
    def primary(self) -> bytes:
        """The key new packets are sealed with."""
        return self._keys[0]

    def keys(self) -> list[bytes]:
        """Every installed key, primary first."""
        return list(self._keys)

    def key_ids(self) -> list[str]:
        """The fingerprints of `keys()`, in the same order."""
        return [self._ids[k] for k in self._keys]

    def id_of(self, key: bytes) -> str:
        """The fingerprint of an installed key (cached: it is counted on every packet)."""
        return self._ids[key]

    def __contains__(self, key: object) -> bool:
        return key in self._aead

    def __len__(self) -> int:
        return len(self._keys)

    def __iter__(self) -> Iterator[bytes]:
        """The keys in the order packets are tried: primary first."""
        return iter(list(self._keys))

    def install(self, key: bytes) -> bool:
        """Accept packets under `key` (it becomes primary only if the ring was empty).

        Returns False when the key was already installed: installing twice is harmless, so
        a rotation command can be retried.
        """
        key = check_key(key)
        if key in self._aead:
            return False
        self._keys.append(key)
        self._aead[key] = AESGCM(key)
        self._ids[key] = key_id(key)
        return True

    def use(self, key: bytes) -> None:
        """Seal new packets with `key`, which must be installed already."""
        key = check_key(key)
        if key not in self._aead:
            raise LocalProtocolError(f"key {key_id(key)} is not installed; install it first")
        self._keys.remove(key)
        self._keys.insert(0, key)

    def remove(self, key: bytes) -> bool:
        """Stop accepting `key`; the primary cannot be removed. False if it was not installed."""
        key = check_key(key)
        if key not in self._aead:
            return False
        if key == self._keys[0]:
            raise LocalProtocolError(
                f"key {key_id(key)} is the primary; make another key primary before removing it"
            )
        self._keys.remove(key)
        del self._aead[key]
        del self._ids[key]
        return True

    def aead(self, key: bytes) -> AESGCM:
        return self._aead[key]


def _unix_ms(now: float) -> int:
    """`now` (seconds) as the whole milliseconds the envelope carries; ours, so checked loudly."""
    if not 0 <= now < 1.8e16:  # also refuses NaN; the bound keeps it inside 64 bits of ms
        raise LocalProtocolError(f"now={now!r} is not a Unix time in seconds")
    return round(now * 1000)


@dataclass(frozen=True, slots=True)
class Opened:
    """A packet that passed every check: its payload, who sealed it when, and under which key.

    `nonce` is what an answer (`seal(..., reply_to=nonce)`) or a continuation piece is bound
    to; empty in plaintext mode, which binds nothing.
    """

    payload: bytes
    sent_at: float | None
    key_id: str | None
    nonce: bytes = b""


class ReplayWindow:
    """Remembers the nonces of accepted packets for as long as their timestamps stay fresh.

    Time is in integer milliseconds here so comparisons are exact. See the module docstring
    for why forgetting raises a floor instead of opening a hole.
    """

    def __init__(self, window_ms: int, max_remembered: int) -> None:
        if window_ms <= 0 or max_remembered <= 0:
            raise LocalProtocolError("window and max_remembered must be positive")
        self.window_ms = window_ms
        self.max_remembered = max_remembered
        self._seen: set[bytes] = set()
        self._by_age: list[tuple[int, bytes]] = []
        self.floor_ms = -1
        #: entries forgotten early because memory was full (a metric: raise max_remembered)
        self.evicted_when_full = 0

    def __len__(self) -> int:
        return len(self._seen)

    def _forget_oldest(self) -> None:
        sent_ms, nonce = heapq.heappop(self._by_age)
        self._seen.discard(nonce)
        self.floor_ms = max(self.floor_ms, sent_ms)

    def check_and_remember(self, nonce: bytes, sent_ms: int, now_ms: int) -> None:
        """Accept a fresh, unseen packet (remembering it) or raise RemoteProtocolError."""
        oldest_fresh = now_ms - self.window_ms
        while self._by_age and self._by_age[0][0] < oldest_fresh:
            self._forget_oldest()
        if sent_ms < oldest_fresh or sent_ms <= self.floor_ms:
            raise RemoteProtocolError("stale", f"sent {now_ms - sent_ms} ms ago")
        if sent_ms > now_ms + self.window_ms:
            raise RemoteProtocolError("future", f"sent {sent_ms - now_ms} ms ahead of our clock")
        if nonce in self._seen:
            raise RemoteProtocolError("replayed")
        while len(self._seen) >= self.max_remembered:
            self.evicted_when_full += 1
            self._forget_oldest()
            if sent_ms <= self.floor_ms:
                raise RemoteProtocolError("stale", "older than the replay memory holds")
        self._seen.add(nonce)
        heapq.heappush(self._by_age, (sent_ms, nonce))


class GossipCipher:
    """Seals outgoing and opens incoming gossip envelopes for one peer.

    `keyring=None` is plaintext mode (--gossip-insecure): packets still carry and check the
    version byte and the cluster label, but are neither encrypted nor replay-checked.
    `overhead` is what the envelope adds: the codec's payload budget for a 1400-byte
    datagram is `1400 - cipher.overhead`.
    """

    def __init__(
        self,
        keyring: Keyring | None,
        label: str,
        *,
        window: float = 30.0,
        max_remembered: int = 65536,
        max_envelope: int = DEFAULT_MAX_ENVELOPE,
        nonce_source: NonceSource = os.urandom,
        name: str = "",
    ) -> None:
        encoded = label.encode()
        if len(encoded) > MAX_LABEL_BYTES:
            raise LocalProtocolError(f"a cluster label is at most {MAX_LABEL_BYTES} UTF-8 bytes")
        self.keyring = keyring
        self.label = label
        self._label_bytes = encoded
        self._label_tag = label_tag(label)
        self._nonce_source = nonce_source
        self.max_envelope = max_envelope
        self.replay = ReplayWindow(round(window * 1000), max_remembered)
        self._name = b""
        self._name_tag = _NO_TAG
        self.name = name
        #: key id -> packets opened with it: once an old key's count stops rising on every
        #: peer, nobody seals with it any more and it is safe to remove.
        self.opened_by_key: dict[str, int] = {}

    @property
    def encrypted(self) -> bool:
        return self.keyring is not None

    @property
    def name(self) -> str:
        """This peer's name: envelopes sealed `to` it open here, those for another do not."""
        return self._name.decode()

    @name.setter
    def name(self, name: str) -> None:
        self._name = name.encode()
        self._name_tag = recipient_tag(name) if name else _NO_TAG

    @property
    def overhead(self) -> int:
        """Bytes the envelope adds to a payload (46 with a key, 5 in plaintext mode)."""
        return AESGCM_OVERHEAD if self.keyring is not None else PLAINTEXT_OVERHEAD

    def payload_budget(self, wire_limit: int = 1400) -> int:
        """The largest payload whose envelope fits in `wire_limit` bytes."""
        return wire_limit - self.overhead

    def seal(self, payload: bytes, now: float, *, to: str = "", reply_to: bytes = b"") -> bytes:
        """Wrap `payload` in an envelope, encrypting it under the primary key if there is one.

        `to` binds it to the peer of that name (only it opens it); `reply_to` binds it to the
        request whose nonce that is (only its sender, expecting the answer, opens it); with
        neither, any peer of the cluster opens it. Plaintext mode binds nothing.
        """
        if to and reply_to:
            raise LocalProtocolError("an envelope is for a named peer or a request, not both")
        if to:
            return self._seal(payload, now, TO_NAME, recipient_tag(to), to.encode())
        if reply_to:
            return self._seal(payload, now, TO_REPLY, nonce_tag(reply_to), reply_to)
        return self._seal(payload, now, TO_ANY, _NO_TAG, b"")

    def seal_continuation(self, piece: bytes, now: float, first: bytes, index: int) -> bytes:
        """Piece `index` (1, 2, ...) of the stream message whose first envelope had nonce
        `first`: it opens only as that piece of that message (`open_continuation`)."""
        binding = first + _INDEX.pack(index)
        return self._seal(piece, now, TO_CONTINUATION, nonce_tag(first), binding)

    def _seal(self, payload: bytes, now: float, kind: int, tag: bytes, binding: bytes) -> bytes:
        if len(payload) + self.overhead > self.max_envelope:
            raise LocalProtocolError(
                f"payload of {len(payload)} bytes exceeds the {self.max_envelope}-byte envelope"
            )
        if self.keyring is None:
            return bytes((VERSION_PLAINTEXT,)) + self._label_tag + payload
        sent_ms = _unix_ms(now)
        header = _HEADER.pack(VERSION_AESGCM, self._label_tag, sent_ms, kind, tag)
        nonce = self._nonce_source(NONCE_SIZE)
        if len(nonce) != NONCE_SIZE:
            raise LocalProtocolError("the nonce source must return exactly 12 bytes")
        sealed = self.keyring.aead(self.keyring.primary).encrypt(
            nonce, payload, header + self._label_bytes + binding
        )
        return header + nonce + sealed

    @staticmethod
    def nonce_of(envelope: bytes) -> bytes:
        """The nonce of an envelope we sealed (what its answer or its pieces are bound to)."""
        if envelope[:1] != bytes((VERSION_AESGCM,)):
            return b""
        return bytes(envelope[HEADER_SIZE : HEADER_SIZE + NONCE_SIZE])

    @property
    def header_size(self) -> int:
        """How many leading bytes `check_header` needs: all a stream reads before the rest."""
        return HEADER_SIZE if self.keyring is not None else PLAINTEXT_OVERHEAD

    def check_header(self, header: Packet, *, reply_to: bytes = b"", first: bytes = b"") -> None:
        """Refuse an envelope from its first `header_size` bytes, before reading the rest.

        Cheap and early (no cryptography): the version, the mode, the cluster label tag and
        whom it is for. `reply_to` says we expect the answer to that request; `first` that we
        expect a continuation of that message. RemoteProtocolError(reason) if refused; a pass
        proves nothing (`open` authenticates), it only lets a stream read on.
        """
        if len(header) < 1:
            raise RemoteProtocolError("too_short", "empty packet")
        version = header[0]
        if version == VERSION_AESGCM_V2 and self.keyring is not None:
            raise RemoteProtocolError("old_envelope", "version 2: upgrade that peer")
        if version not in (VERSION_PLAINTEXT, VERSION_AESGCM):
            raise RemoteProtocolError("bad_version", f"version byte {version:#04x}")
        if (version == VERSION_AESGCM) != (self.keyring is not None):
            mine = "encrypted" if self.keyring is not None else "plaintext (--gossip-insecure)"
            raise RemoteProtocolError("encryption_mismatch", f"we gossip {mine}")
        if len(header) < self.header_size:
            raise RemoteProtocolError("too_short", f"{len(header)} bytes")
        if bytes(header[1 : 1 + LABEL_TAG_SIZE]) != self._label_tag:
            raise RemoteProtocolError("label_mismatch", "another cluster name")
        if self.keyring is None:
            return
        kind = header[13]
        tag = bytes(header[14:HEADER_SIZE])
        if first:
            if kind != TO_CONTINUATION or tag != nonce_tag(first):
                raise RemoteProtocolError("not_for_us", "not a piece of this message")
        elif reply_to:
            if kind != TO_REPLY or tag != nonce_tag(reply_to):
                raise RemoteProtocolError("not_for_us", "not the answer to our request")
        elif kind == TO_NAME:
            if not self._name or tag != self._name_tag:
                raise RemoteProtocolError("not_for_us", "sealed for another peer")
        elif kind != TO_ANY:
            raise RemoteProtocolError("not_for_us", f"to kind {kind} out of place")

    def open(self, packet: Packet, now: float, *, reply_to: bytes = b"") -> bytes:
        """The payload of an envelope a peer sent, or RemoteProtocolError(reason)."""
        return self.open_detailed(packet, now, reply_to=reply_to).payload

    def open_detailed(self, packet: Packet, now: float, *, reply_to: bytes = b"") -> Opened:
        """As `open`, also saying when the packet was sealed, under which key, its nonce.

        An envelope for another peer, or the answer to a request we did not send (or not the
        one in `reply_to`), is refused as `not_for_us`: a replay from another peer's traffic.
        """
        self._check_size(packet)
        self.check_header(packet, reply_to=reply_to)
        if len(packet) < self.overhead:
            raise RemoteProtocolError("too_short", f"{len(packet)} bytes")
        if self.keyring is None:
            return Opened(bytes(packet[PLAINTEXT_OVERHEAD:]), None, None)
        kind = packet[13]
        binding = self._name if kind == TO_NAME else reply_to if kind == TO_REPLY else b""
        opened = self._open_sealed(packet, binding)
        sent_ms = _HEADER.unpack(bytes(packet[:HEADER_SIZE]))[2]
        self.replay.check_and_remember(opened.nonce, sent_ms, _unix_ms(now))
        self._count(opened)
        return opened

    def open_continuation(self, packet: Packet, first: bytes, index: int) -> bytes:
        """Piece `index` of the stream message whose first envelope had nonce `first`.

        Not checked against the replay window: it opens only inside that one message, whose
        first envelope was (and a message is read once).
        """
        self._check_size(packet)
        self.check_header(packet, first=first if self.keyring is not None else b"")
        if len(packet) < self.overhead:
            raise RemoteProtocolError("too_short", f"{len(packet)} bytes")
        if self.keyring is None:
            return bytes(packet[PLAINTEXT_OVERHEAD:])
        opened = self._open_sealed(packet, first + _INDEX.pack(index))
        self._count(opened)
        return opened.payload

    def _check_size(self, packet: Packet) -> None:
        if len(packet) > self.max_envelope:
            raise RemoteProtocolError("too_large", f"{len(packet)} bytes")

    def _count(self, opened: Opened) -> None:
        kid = opened.key_id
        if kid is not None:
            self.opened_by_key[kid] = self.opened_by_key.get(kid, 0) + 1

    def _open_sealed(self, packet: Packet, binding: bytes) -> Opened:
        assert self.keyring is not None
        header = bytes(packet[:HEADER_SIZE])
        nonce = bytes(packet[HEADER_SIZE : HEADER_SIZE + NONCE_SIZE])
        # a view, not a slice: a large piece is not copied before decrypting
        sealed = memoryview(packet)[HEADER_SIZE + NONCE_SIZE :]
        aad = header + self._label_bytes + binding
        for key in self.keyring:
            try:
                payload = self.keyring.aead(key).decrypt(nonce, sealed, aad)
            except InvalidTag:
                continue
            break
        else:
            raise RemoteProtocolError("auth_failed", "no installed key opens it")
        sent_ms = _HEADER.unpack(header)[2]
        return Opened(payload, sent_ms / 1000, self.keyring.id_of(key), nonce)
