"""Fuzz the gossip codec: a million random and mutated packets, counted by drop reason.

The codec's promise (fnlb/gossip/codec.py, Rule 2): ANY byte string either decodes or raises
RemoteProtocolError(reason), which the member counts as a drop. This script checks the
promise at volume: it feeds `--count` inputs (half random bytes, half valid compound packets
and push-pull streams mutated by bit flips, byte overwrites, truncation, insertion, splicing
and duplication) through `decode_packet` (and every 8th also through `decode_stream`), and
fails loudly if anything else escapes. It prints how many decoded, how many were refused per
reason, and the rate.

Rerun (from the repository root, ~10-30 s on one core):

    python bench/gossip_fuzz.py                      # 1,000,000 inputs, seed 1
    python -m bench.gossip_fuzz --count 200000 --seed 7
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

if __package__ in (None, ""):  # run as a file: make `fnlb` importable from the repo root
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fnlb.errors import RemoteProtocolError
from fnlb.gossip import codec
from fnlb.gossip.messages import (
    Ack,
    Alive,
    DatagramMessage,
    Dead,
    IndirectPing,
    MemberState,
    Nack,
    Ping,
    PushPull,
    PushPullEntry,
    StreamPing,
    Suspect,
    UserBroadcast,
    UserDirect,
)


def corpus(rng: random.Random) -> list[bytes]:
    """Valid datagrams and stream messages of every type, to mutate."""
    msgs: list[DatagramMessage] = [
        Ping(rng.getrandbits(32), "node-1"),
        IndirectPing(7, "node-2", ("10.0.0.2", 7946), True),
        Ack(rng.getrandbits(64)),
        Nack(3),
        Alive(5, "node-3", ("10.0.0.3", 7946), b"zone=a;weight=3"),
        Suspect(9, "node-4", "node-1"),
        Dead(2, "node-5", "node-5"),
        UserBroadcast("node-6", b"nodes", bytes(rng.getrandbits(8) for _ in range(200))),
        UserDirect("node-7", b"l/node-7", bytes(rng.getrandbits(8) for _ in range(200))),
    ]
    out = [codec.encode_packet([codec.encode_message(m)]) for m in msgs]
    for _ in range(20):
        k = rng.randrange(1, 12)
        out.append(codec.encode_packet([codec.encode_message(rng.choice(msgs)) for _ in range(k)]))
    rows = tuple(
        PushPullEntry(f"n{i}", (f"10.0.1.{i}", 7946), i, MemberState(i % 4), b"m" * (i % 9))
        for i in range(12)
    )
    out.append(codec.encode_stream(PushPull(True, rows, b"user-state")))
    out.append(codec.encode_stream(StreamPing(4, "node-1")))
    return out


def mutate(data: bytes, rng: random.Random, pool: list[bytes]) -> bytes:
    """One to four random edits of `data`."""
    b = bytearray(data)
    for _ in range(rng.randrange(1, 5)):
        op = rng.randrange(7)
        n = len(b)
        if op == 0 and n:  # flip a bit
            i = rng.randrange(n)
            b[i] ^= 1 << rng.randrange(8)
        elif op == 1 and n:  # overwrite a byte with an interesting value
            b[rng.randrange(n)] = rng.choice((0x00, 0x7F, 0x80, 0xC0, 0xC1, 0xDC, 0xDD, 0xFF))
        elif op == 2:  # truncate
            del b[rng.randrange(n + 1) :]
        elif op == 3:  # insert random bytes
            i = rng.randrange(n + 1)
            b[i:i] = rng.randbytes(rng.randrange(1, 9))
        elif op == 4 and n:  # duplicate a slice
            i = rng.randrange(n)
            j = rng.randrange(i, n) + 1
            b[j:j] = b[i:j]
        elif op == 5:  # splice with another valid input
            other = rng.choice(pool)
            i = rng.randrange(n + 1)
            b[i:] = other[rng.randrange(len(other)) :]
        elif op == 6 and n > 1:  # change the version byte
            b[0] = rng.randrange(256)
    return bytes(b)


def run(count: int, seed: int) -> Counter[str]:
    rng = random.Random(seed)
    pool = corpus(rng)
    outcome: Counter[str] = Counter()
    decoders: tuple[Callable[[bytes], object], ...] = (codec.decode_packet, codec.decode_stream)
    for i in range(count):
        if i % 2:
            data = mutate(rng.choice(pool), rng, pool)
            kind = "mutated"
        else:
            data = rng.randbytes(rng.randrange(0, 64))
            if rng.random() < 0.5:  # get past the version check half the time
                data = bytes([codec.VERSION]) + data
            kind = "random"
        for decode in decoders if i % 8 == 0 else decoders[:1]:
            try:
                decode(data)
            except RemoteProtocolError as exc:
                outcome[f"{kind}:{exc.reason}"] += 1
            except Exception as exc:  # the promise is broken: say so with the input
                raise SystemExit(f"codec leaked {exc!r} on input {data.hex()}") from exc
            else:
                outcome[f"{kind}:decoded"] += 1
    return outcome


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=1_000_000, help="inputs to generate")
    parser.add_argument("--seed", type=int, default=1, help="random seed")
    args = parser.parse_args(argv)
    print(f"gossip codec fuzz: {args.count} inputs, seed {args.seed}")
    start = time.perf_counter()
    outcome = run(args.count, args.seed)
    elapsed = time.perf_counter() - start
    decodes = sum(outcome.values())
    print(f"{'input:outcome':<28} {'count':>10} {'share':>7}")
    for key, n in sorted(outcome.items()):
        print(f"{key:<28} {n:>10} {n / decodes:>7.2%}")
    print(
        f"{decodes} decode calls in {elapsed:.1f} s: {decodes / elapsed:,.0f}/s; "
        "no exception other than RemoteProtocolError"
    )


if __name__ == "__main__":
    main()
