"""What `-db` asks for: the original fnlb's node stores, as far as fnlb keeps them.

- `sqlite3://:memory:` (the default): the node list lives in memory (peers share it by gossip).
- `sqlite3:///path/to/file.db` (or `sqlite3://relative.db`): the list is kept in that SQLite
  file across restarts, as the original did (lone fnlb; a cluster peer uses `-state-dir`).
- `k8s`: Kubernetes owns the list (pods matching `-label-selector`).

Anything else (postgres://, mysql://) is refused. The message names only the scheme: such URLs
carry passwords, and error messages end up in logs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from fnlb.errors import ConfigError

MEMORY = "sqlite3://:memory:"


@dataclass(frozen=True, slots=True)
class DbChoice:
    kind: Literal["memory", "sqlite", "k8s"]
    path: str = ""


def parse_db(db: str) -> DbChoice:
    """The store `-db` names, or ConfigError that never repeats the URL itself."""
    text = db.strip()
    if text in ("", MEMORY, "sqlite3://"):
        return DbChoice("memory")
    if text == "k8s":
        return DbChoice("k8s")
    scheme, sep, rest = text.partition("://")
    if not sep:
        raise ConfigError(
            "-db: expected k8s, sqlite3://:memory: or sqlite3:///path/to/file.db "
            "(the value given is not shown: it may hold a password)"
        )
    if scheme == "sqlite3":
        path = rest.split("?", 1)[0]
        if path == ":memory:":
            return DbChoice("memory")
        return DbChoice("sqlite", path)
    shown = scheme if scheme.isalnum() and len(scheme) <= 20 else "this"
    raise ConfigError(
        f"-db: {shown}:// stores are not supported: fnlb keeps its node list itself (in memory, "
        "in a sqlite3:///file, shared by gossip, or from Kubernetes with -db=k8s); "
        "the URL is not shown since it may hold a password"
    )
