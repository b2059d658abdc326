"""The state directory: what a peer must remember across a restart, written durably.

One JSON file, `state.json`, replaced atomically: written to a temporary file, fsync'd,
renamed over the old one, and the directory fsync'd, so after a crash the file is either the
old state or the new one, never a torn mix. A management API change is acknowledged only after
`save` returns. A file that exists but cannot be read stops the peer at start with a message
naming it: starting empty would silently drop acknowledged changes.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from fnlb.errors import ConfigError

STATE_FILE = "state.json"
FORMAT_VERSION = 1


class StateDir:
    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.file = self.path / STATE_FILE

    def ensure(self) -> None:
        """Create the directory (0700) or fail with a message naming it."""
        try:
            self.path.mkdir(mode=0o700, parents=True, exist_ok=True)
            probe = self.path / ".write-test"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as e:
            raise ConfigError(f"-state-dir {self.path}: not writable: {e.strerror}") from None

    def load(self) -> dict[str, Any] | None:
        """The saved state, None when there is none yet; ConfigError when it is unreadable."""
        try:
            raw = self.file.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as e:
            raise ConfigError(f"cannot read {self.file}: {e.strerror}") from None
        try:
            state = json.loads(raw)
        except ValueError as e:
            raise ConfigError(
                f"{self.file} is corrupt ({e}); move it away to start with an empty state"
            ) from None
        if not isinstance(state, dict) or state.get("format") != FORMAT_VERSION:
            raise ConfigError(f"{self.file} is not an fnlb state file of format {FORMAT_VERSION}")
        return state

    def save(self, state: dict[str, Any]) -> None:
        """Write `state` durably (see the module docstring); returns once it is on disk."""
        data = json.dumps({**state, "format": FORMAT_VERSION}, separators=(",", ":")).encode()
        tmp = self.path / f".{STATE_FILE}.{os.getpid()}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, self.file)
        dir_fd = os.open(self.path, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
