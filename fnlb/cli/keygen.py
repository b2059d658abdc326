"""`fnlb keygen`: make a new gossip encryption key (base64), or a keyring file holding one.

Every peer of a cluster needs the same key: give it with --gossip-key (or FNLB_GOSSIP_KEY),
or write a keyring file with --output and pass --gossip-keyring-file. Keys come from the
operating system's CSPRNG (`os.urandom`).
"""

from __future__ import annotations

import argparse
import os
import sys

from fnlb.gossip.crypto import KEY_SIZES, key_id
from fnlb.gossip.keyring_file import encode_key, save_keyring_file


def new_key(size: int = 32) -> bytes:
    """A fresh random AES key of `size` bytes (16, 24 or 32)."""
    if size not in KEY_SIZES:
        raise ValueError(f"an AES key is 16, 24 or 32 bytes, not {size}")
    return os.urandom(size)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--bytes",
        type=int,
        choices=KEY_SIZES,
        default=32,
        help="key size: 16, 24 or 32 bytes, i.e. AES-128, -192 or -256 (default: 32)",
    )
    parser.add_argument(
        "--output",
        metavar="FILE",
        default="",
        help="write a new keyring file (mode 0600) holding the key instead of printing it; "
        "refuses to overwrite an existing file",
    )


def run(args: argparse.Namespace) -> int:
    key = new_key(args.bytes)
    if not args.output:
        print(encode_key(key))
        return 0
    if os.path.lexists(args.output):
        print(
            f"fnlb keygen: {args.output} exists; not overwriting it (rotate keys with "
            "'fnlb keys install|use|remove')",
            file=sys.stderr,
        )
        return 1
    try:
        save_keyring_file(args.output, [key])
    except OSError as e:
        print(f"fnlb keygen: cannot write {args.output}: {e.strerror or e}", file=sys.stderr)
        return 1
    print(f"wrote {args.output} with key {key_id(key)}; copy it to every peer", file=sys.stderr)
    return 0
