"""Passwords out of messages: `scheme://user:secret@host` -> `scheme://user:***@host`.

The original fnlb took SQL URLs (`-db=mysql://user:pass@tcp(db:3306)/fnlb`) and fnlb still
names them in its refusals; anything that echoes a flag or URL back to an operator's terminal
or log goes through `redact_urls` first, so a password never lands in a log collector.
"""

from __future__ import annotations

import re

# The userinfo of a URL: after `scheme://` and a user name, a password up to the LAST `@` of
# the same whitespace-free word, as Go's url.Parse reads it (passwords may hold a raw `@`):
# redacting too much of a word is harmless, too little is a leak.
_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<user>[^:/@\s]*):\S*@")


def redact_urls(text: str) -> str:
    """`text` with the password of every URL in it replaced by `***` (the user name kept)."""
    return _USERINFO.sub(lambda m: f"{m['scheme']}{m['user']}:***@", text)
