"""What gossip encryption costs: seal and open of one 1400-byte datagram and one push/pull.

Rerun: python -m bench.gossip_crypto [--iterations 20000]

Prints microseconds per operation for each key size, for plaintext mode, and for the worst
case during a rotation (the packet's key is the last of three tried). The replay window is
part of `open`, so its bookkeeping is included. Times are wall-clock on a shared machine:
compare rows of one run, not runs of different days.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

from fnlb.gossip.crypto import GossipCipher, Keyring

NOW = 1_800_000_000.0


def per_op_us(fn: Callable[[], object], iterations: int) -> float:
    start = time.perf_counter()
    for _ in range(iterations):
        fn()
    return (time.perf_counter() - start) / iterations * 1e6


def measure(
    name: str, sender: GossipCipher, receiver: GossipCipher, size: int, iterations: int
) -> tuple[str, int, float, float]:
    payload = bytes(sender.payload_budget(size)) if size <= 1400 else bytes(size)
    clock = iter(range(10**9))
    seal_us = per_op_us(lambda: sender.seal(payload, NOW), iterations)
    packets = [sender.seal(payload, NOW) for _ in range(iterations)]
    it = iter(packets)
    # each packet opened once, so the replay window admits it; time advances 1 us a packet
    open_us = per_op_us(lambda: receiver.open(next(it), NOW + next(clock) * 1e-6), iterations)
    return name, len(packets[0]), seal_us, open_us


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=20000)
    n = parser.parse_args().iterations
    k16, k32, a, b = (bytes([i]) * s for i, s in ((1, 16), (2, 32), (3, 32), (4, 32)))
    label = "prod"
    rows = [
        measure(
            "AES-128-GCM",
            GossipCipher(Keyring([k16]), label),
            GossipCipher(Keyring([k16]), label, max_remembered=n + 1),
            1400,
            n,
        ),
        measure(
            "AES-256-GCM",
            GossipCipher(Keyring([k32]), label),
            GossipCipher(Keyring([k32]), label, max_remembered=n + 1),
            1400,
            n,
        ),
        measure(
            "AES-256-GCM, 3rd of 3 keys",
            GossipCipher(Keyring([k32]), label),
            GossipCipher(Keyring([a, b, k32]), label, max_remembered=n + 1),
            1400,
            n,
        ),
        measure(
            "plaintext (--gossip-insecure)",
            GossipCipher(None, label),
            GossipCipher(None, label),
            1400,
            n,
        ),
        measure(
            "AES-256-GCM push/pull 20 MiB",
            GossipCipher(Keyring([k32]), label),
            GossipCipher(Keyring([k32]), label),
            20 * 1024 * 1024,
            max(3, n // 2000),
        ),
    ]
    print(f"{'envelope':<32} {'bytes':>9} {'seal us':>10} {'open us':>10} {'MB/s open':>10}")
    for name, size, seal_us, open_us in rows:
        print(f"{name:<32} {size:>9} {seal_us:>10.1f} {open_us:>10.1f} {size / open_us:>10.0f}")


if __name__ == "__main__":
    main()
