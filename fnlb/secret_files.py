"""Reading files that hold secrets: refused unless only their owner can read or write them.

Gossip keyrings, management token files, TLS private keys and the CLI's token file all go
through `read_secret_text`. A secret that other local users can read is already leaked, and
starting anyway would hide that from the operator: so fnlb refuses, naming the file, its mode
and the fix (`chmod 600`), as ssh does for private keys. Kubernetes mounts secrets 0644
unless the volume says `defaultMode: 0400`; docs/security.md says so.
"""

from __future__ import annotations

import os
import stat

from fnlb.errors import ConfigError

_OTHERS = stat.S_IRWXG | stat.S_IRWXO  # any access for the group or for everyone


def check_private(path: str | os.PathLike[str], what: str) -> None:
    """ConfigError unless `path` exists and gives its group and others no access at all."""
    name = os.fspath(path)
    try:
        mode = os.stat(name).st_mode
    except OSError as e:
        raise ConfigError(f"{what} {name}: cannot read: {e.strerror or e}") from None
    _refuse_shared(name, what, mode)


def read_secret_text(path: str | os.PathLike[str], what: str) -> str:
    """The UTF-8 text of a private secret file; ConfigError naming `what` otherwise.

    The mode is checked on the open file (fstat), so the file checked is the file read.
    """
    name = os.fspath(path)
    try:
        with open(name, "rb") as f:
            _refuse_shared(name, what, os.fstat(f.fileno()).st_mode)
            raw = f.read()
    except OSError as e:
        raise ConfigError(f"{what} {name}: cannot read: {e.strerror or e}") from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{what} {name}: not UTF-8 text") from None


def _refuse_shared(name: str, what: str, mode: int) -> None:
    if mode & _OTHERS:
        raise ConfigError(
            f"{what} {name}: mode {stat.S_IMODE(mode):04o} lets other users read or change a "
            f"secret; make it private to fnlb's user: chmod 600 {name}"
        )
