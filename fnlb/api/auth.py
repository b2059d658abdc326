"""Who may change what on the management API: bearer tokens with names and roles.

Tokens come from `-mgmt-tokens-file` (one `name:token[:role]` per line, `#` comments; the file
must be private to fnlb's user and is read again on SIGHUP) and from `-mgmt-token` /
`FNLB_MGMT_TOKEN` (one admin token named `admin`). A client sends
`Authorization: Bearer TOKEN`. Two roles:

- `admin`: everything;
- `read`: the listings that need a token (`GET /1/lb/keys`, `GET /1/lb/audit`) and no change.

What needs a token, once any token is configured (`required_role`): every change (any method
but GET/HEAD/OPTIONS on a `/1/lb/...` route) needs `admin`; key and audit listings need
`read` or `admin`; other reads (`/1/lb/nodes`, `/1/lb/stats`, `/1/lb/cluster`, `/1/lb/peers`,
`/1/lb/gossip`, `/metrics`, the OpenAPI description) stay open as in the original, so
monitoring needs no secret. `POST /1/lb/cluster/hold` is peer-to-peer and authenticated by the
gossip keyring, not by tokens. Function calls on a shared port are never asked for one.

Answers: 401 `{"msg"}` with `WWW-Authenticate: Bearer` when the token is missing, malformed
or unknown; 403 `{"msg"}` when it is known but its role does not allow the request. With no
token configured the API is open, as the original's was (docs/security.md says when fnlb
refuses to start that way). The presented token is hashed and compared with every configured
token's hash by `hmac.compare_digest`, so the time taken says nothing about any token.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import hmac
import logging
import re
from collections.abc import Awaitable, Callable, Mapping
from typing import Final

from aiohttp import web

from fnlb.api.jsonio import json_error
from fnlb.errors import ConfigError
from fnlb.secret_files import read_secret_text

log = logging.getLogger("fnlb.auth")

TOKEN_NAME_KEY: Final = web.RequestKey("fnlb_token_name", str)
"""Request key holding the name of the token that authenticated it (the audit log reads it)."""
INLINE_NAME: Final = "admin"
MIN_TOKEN_LENGTH: Final = 16
HOLD_PATH: Final = "/1/lb/cluster/hold"
READ_WITH_TOKEN: Final = frozenset({"/1/lb/keys", "/1/lb/audit"})
_SAFE_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS"})
_NAME = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")
_TOKEN = re.compile(r"^[A-Za-z0-9._~+/-]+=*$")  # RFC 6750 b64token
_BEARER = re.compile(r"^Bearer +(\S+) *$", re.IGNORECASE)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Role(enum.Enum):
    READ = "read"
    ADMIN = "admin"

    def allows(self, needed: Role) -> bool:
        return self is Role.ADMIN or needed is Role.READ


def required_role(method: str, route_path: str) -> Role | None:
    """The role a request needs when tokens are configured; None: open to anyone.

    `route_path` is the matched route's canonical path, not the raw URL, so spellings such as
    `/1/lb//keys` cannot slip past: they match no management route.
    """
    if route_path == HOLD_PATH:
        return None
    if method.upper() in _SAFE_METHODS:
        return Role.READ if route_path in READ_WITH_TOKEN else None
    return Role.ADMIN if route_path.startswith("/1/lb/") else None


@dataclasses.dataclass(frozen=True, slots=True)
class Token:
    name: str
    role: Role
    digest: bytes


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def check_token(token: str, where: str) -> None:
    if not _TOKEN.match(token):
        raise ConfigError(
            f"{where}: a token is letters, digits and . _ ~ + / - (base64 or hex), no spaces "
            "or colons"
        )
    if len(token) < MIN_TOKEN_LENGTH:
        raise ConfigError(
            f"{where}: token shorter than {MIN_TOKEN_LENGTH} characters; make one with "
            "'head -c 32 /dev/urandom | base64'"
        )


def parse_tokens(text: str, where: str) -> list[Token]:
    """The tokens of a tokens file's text; ConfigError naming the line that is wrong."""
    tokens: list[Token] = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        at = f"{where} line {number}"
        parts = line.split(":")
        if len(parts) not in (2, 3):
            raise ConfigError(f"{at}: expected 'name:token' or 'name:token:role'")
        name, token = parts[0].strip(), parts[1].strip()
        if not _NAME.match(name):
            raise ConfigError(f"{at}: name {name!r} is not 1-64 of A-Z a-z 0-9 _ . @ -")
        check_token(token, at)
        role_text = parts[2].strip() if len(parts) == 3 else Role.ADMIN.value
        try:
            role = Role(role_text)
        except ValueError:
            raise ConfigError(f"{at}: role {role_text!r} is not admin or read") from None
        tokens.append(Token(name, role, _digest(token)))
    return tokens


class TokenTable:
    """The configured tokens; `identify` finds the one a request presents, in constant time."""

    def __init__(self, tokens: list[Token]) -> None:
        names = [t.name for t in tokens]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ConfigError(f"management tokens: name {sorted(dup)[0]!r} given twice")
        if len({t.digest for t in tokens}) != len(tokens):
            raise ConfigError("management tokens: the same token given twice")
        self._tokens = tuple(tokens)

    def __bool__(self) -> bool:
        return bool(self._tokens)

    @property
    def names(self) -> Mapping[str, Role]:
        return {t.name: t.role for t in self._tokens}

    def identify(self, presented: str) -> Token | None:
        digest = _digest(presented)
        found: Token | None = None
        for token in self._tokens:  # no early exit: every request compares every token
            if hmac.compare_digest(digest, token.digest):
                found = token
        return found


def load_tokens(tokens_file: str, inline: str) -> TokenTable:
    """The tokens of `-mgmt-tokens-file` and `-mgmt-token`; ConfigError if either is bad."""
    tokens: list[Token] = []
    if tokens_file:
        where = f"-mgmt-tokens-file {tokens_file}"
        tokens += parse_tokens(read_secret_text(tokens_file, "-mgmt-tokens-file"), where)
        if not tokens:
            raise ConfigError(f"{where}: holds no token")
    if inline:
        check_token(inline, "-mgmt-token")
        tokens.append(Token(INLINE_NAME, Role.ADMIN, _digest(inline)))
    return TokenTable(tokens)


class Authenticator:
    """The aiohttp middleware enforcing `required_role`, and its SIGHUP reload."""

    def __init__(self, tokens_file: str, inline: str, table: TokenTable | None = None) -> None:
        self._file = tokens_file
        self._inline = inline
        self.table = load_tokens(tokens_file, inline) if table is None else table

    def reload(self) -> None:
        """Read the tokens file again; on any error keep the tokens in force and say why."""
        if not self._file:
            return
        try:
            table = load_tokens(self._file, self._inline)
        except ConfigError as e:
            log.error("management tokens not reloaded; the old ones stay", extra={"error": e})
            return
        self.table = table
        log.info("management tokens reloaded", extra={"tokens": len(table.names)})

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        table = self.table
        if not table:
            return await handler(request)
        resource = request.match_info.route.resource
        needed = required_role(request.method, resource.canonical if resource else "")
        if needed is None:
            return await handler(request)
        header = request.headers.get("Authorization")
        if header is None:
            return _unauthorized(
                "this needs a management token: send the header 'Authorization: Bearer TOKEN'"
            )
        match = _BEARER.match(header)
        if match is None or not _TOKEN.match(match[1]):
            return _unauthorized("malformed Authorization header: expected 'Bearer TOKEN'")
        token = table.identify(match[1])
        if token is None:
            return _unauthorized("unknown token")
        request[TOKEN_NAME_KEY] = token.name
        if not token.role.allows(needed):
            return json_error(
                403,
                f"token {token.name!r} has role {token.role.value}: "
                f"{request.method} {request.path} needs a token with role {needed.value}",
            )
        return await handler(request)


def _unauthorized(msg: str) -> web.Response:
    return json_error(401, msg, {"WWW-Authenticate": 'Bearer realm="fnlb"'})
