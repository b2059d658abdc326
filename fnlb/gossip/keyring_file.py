"""Gossip keys at rest: the keyring file, keys from settings, and the rotation operations.

The keyring file is JSON, a list of base64 AES keys with the primary first::

    ["q1xw0v1x...=", "Zm9vYmFy...="]

It holds secrets, so it is written 0600, atomically (a temporary file in the same directory,
fsync, rename, fsync of the directory): a crash mid-rotation leaves the old file or the new
one, never half of either. Every peer keeps its own file; `fnlb keys ...` changes the live
keyring of one running peer through its management API, which calls the `*_key` functions
below, so the change survives a restart.

Errors: bad settings raise `ConfigError` naming the flag; bad rotation requests raise
`BadRequest` whose `status` is the HTTP status the management API answers with.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from fnlb.errors import BadRequest, ConfigError, LocalProtocolError
from fnlb.gossip.crypto import KEY_SIZES, Keyring, key_id
from fnlb.secret_files import read_secret_text

FLAG_KEY = "--gossip-key"
FLAG_KEYRING_FILE = "--gossip-keyring-file"
FLAG_INSECURE = "--gossip-insecure"

NO_KEY_MESSAGE = (
    "gossip between fnlb peers is encrypted and no key was given. Make a key with "
    f"'fnlb keygen' and give the same one to every peer with {FLAG_KEY} KEY (or the "
    f"environment variable FNLB_GOSSIP_KEY), or write a keyring file with "
    f"'fnlb keygen --output FILE' and pass {FLAG_KEYRING_FILE} FILE. To gossip in plaintext "
    f"on a network you trust, pass {FLAG_INSECURE}."
)


def decode_key(text: str, source: str = "key") -> bytes:
    """A base64 AES key -> its bytes; ValueError naming `source` if it is not one."""
    cleaned = text.strip()
    try:
        key = base64.b64decode(cleaned, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"{source} is not valid base64 (make one with 'fnlb keygen')") from None
    if len(key) not in KEY_SIZES:
        raise ValueError(
            f"{source} decodes to {len(key)} bytes; an AES key is 16, 24 or 32 bytes "
            "(make one with 'fnlb keygen')"
        )
    return key


def encode_key(key: bytes) -> str:
    return base64.b64encode(key).decode("ascii")


def load_keyring_file(path: str | os.PathLike[str]) -> Keyring:
    """Read a keyring file; ConfigError saying what is wrong with it (and which entry)."""
    where = f"{FLAG_KEYRING_FILE} {os.fspath(path)}"
    text = read_secret_text(path, FLAG_KEYRING_FILE)  # refused if others may read it
    try:
        entries: Any = json.loads(text)
    except json.JSONDecodeError as e:
        raise ConfigError(f"{where}: not JSON ({e.msg} at line {e.lineno})") from None
    if not isinstance(entries, list) or not all(isinstance(x, str) for x in entries):
        raise ConfigError(f"{where}: expected a JSON list of base64 keys, primary first")
    if not entries:
        raise ConfigError(f"{where}: holds no keys (make one with 'fnlb keygen')")
    keys = []
    for i, entry in enumerate(entries):
        try:
            keys.append(decode_key(entry, f"entry {i}"))
        except ValueError as e:
            raise ConfigError(f"{where}: {e}") from None
    return Keyring(keys)


def save_keyring_file(path: str | os.PathLike[str], keys: Sequence[bytes]) -> None:
    """Write `keys` (primary first) to `path` atomically with mode 0600; OSError on failure."""
    target = Path(path)
    text = json.dumps([encode_key(k) for k in keys], indent=1) + "\n"
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o600)  # mkstemp already uses 0600; say so for whoever reads this
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_directory(target.parent)


def _fsync_directory(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some filesystems cannot fsync a directory; the rename is still atomic
    finally:
        os.close(fd)


def keyring_from_settings(key: str, keyring_file: str, *, insecure: bool) -> Keyring | None:
    """The keyring to start gossip with, or None for plaintext (only when `insecure`).

    `key` is one base64 key given inline, `keyring_file` a path; give at most one. With
    neither, startup refuses unless `insecure`, with a message saying how to make a key.
    """
    if key and keyring_file:
        raise ConfigError(
            f"{FLAG_KEY} and {FLAG_KEYRING_FILE} both given: give one (a keyring file can "
            "hold several keys, primary first)"
        )
    if key:
        try:
            return Keyring([decode_key(key, FLAG_KEY)])
        except ValueError as e:
            raise ConfigError(str(e)) from None
    if keyring_file:
        return load_keyring_file(keyring_file)
    if insecure:
        return None
    raise ConfigError(NO_KEY_MESSAGE)


# --- rotation: what the management API calls -------------------------------------------------
#
# Each function takes the live keyring and the keyring file path ("" when the keys came
# inline, so nothing is persisted), applies the change to a copy, writes the file, and only
# then changes the live keyring: a failed write leaves the peer as it was. Each returns the
# listing the API answers with (`keys_listing`).


def keys_listing(keyring: Keyring, *, persisted: bool) -> dict[str, Any]:
    """The JSON answer describing a keyring by key ids only (keys themselves never leave)."""
    return {
        "keys": [{"id": kid, "primary": i == 0} for i, kid in enumerate(keyring.key_ids())],
        "persisted": persisted,
    }


def key_from_request(body: object) -> bytes:
    """The key in a request body `{"key": "<base64>"}`, or BadRequest(400)."""
    if not isinstance(body, dict) or not isinstance(body.get("key"), str):
        raise BadRequest('expected a JSON object {"key": "<base64 AES key>"}')
    try:
        return decode_key(body["key"], "key")
    except ValueError as e:
        raise BadRequest(str(e)) from None


def install_key(keyring: Keyring, keyring_file: str, key: bytes) -> dict[str, Any]:
    """Accept packets sealed with `key` from now on (idempotent)."""
    if key not in keyring:
        _apply(keyring, keyring_file, [*keyring.keys(), key])
    keyring.install(key)
    return keys_listing(keyring, persisted=bool(keyring_file))


def use_key(keyring: Keyring, keyring_file: str, key: bytes) -> dict[str, Any]:
    """Seal with `key` from now on; BadRequest(404) if it is not installed on this peer."""
    if key not in keyring:
        raise BadRequest(
            f"key {key_id(key)} is not installed on this peer; install it on every peer first",
            404,
        )
    if key != keyring.primary:
        _apply(keyring, keyring_file, [key, *(k for k in keyring if k != key)])
    keyring.use(key)
    return keys_listing(keyring, persisted=bool(keyring_file))


def remove_key(keyring: Keyring, keyring_file: str, key: bytes) -> dict[str, Any]:
    """Stop accepting `key`; BadRequest(409) for the primary, 404 if it is not installed."""
    if key not in keyring:
        raise BadRequest(f"key {key_id(key)} is not installed on this peer", 404)
    if key == keyring.primary:
        raise BadRequest(
            f"key {key_id(key)} is the primary; make another key primary on every peer first",
            409,
        )
    _apply(keyring, keyring_file, [k for k in keyring if k != key])
    try:
        keyring.remove(key)
    except LocalProtocolError as e:  # pragma: no cover - ruled out above
        raise BadRequest(str(e), 409) from None
    return keys_listing(keyring, persisted=bool(keyring_file))


def _apply(keyring: Keyring, keyring_file: str, new_keys: list[bytes]) -> None:
    if not keyring_file:
        return
    try:
        save_keyring_file(keyring_file, new_keys)
    except OSError as e:
        raise BadRequest(
            f"cannot write the keyring file {keyring_file}: {e.strerror or e}; "
            "the key change was not applied",
            500,
        ) from None
