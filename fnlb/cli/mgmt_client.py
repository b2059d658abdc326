"""Talking to a running peer's management API from the command line (`fnlb keys|nodes|cluster`).

One request, one JSON answer, or a `PeerError` whose message names the URL and says what went
wrong in words an operator can act on (unreachable, refused with the peer's own `msg`, or an
answer that is not what the command expected).

Every tool takes the same client options (`add_client_arguments`): the token, from `--token`,
`--token-file` (a file holding only the token, private to its user) or `FNLB_MGMT_TOKEN`, sent
as `Authorization: Bearer TOKEN`; and for `https://` URLs `--cacert` (the CA that signed the
peers' certificates; default: the system's) and `--cert`/`--key` (a client certificate, when
the peers ask for one).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import ssl
from collections.abc import Mapping
from typing import Any

import aiohttp

from fnlb.errors import ConfigError
from fnlb.redact import redact_urls
from fnlb.secret_files import check_private, read_secret_text

TOKEN_ENV = "FNLB_MGMT_TOKEN"


def add_client_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--token",
        default=None,
        help=f"management token (default: --token-file, then ${TOKEN_ENV}); a flag shows in ps",
    )
    parser.add_argument("--token-file", default=None, metavar="FILE", help="file holding the token")
    parser.add_argument("--cacert", default=None, metavar="FILE", help="CA for https:// peers")
    parser.add_argument("--cert", default=None, metavar="FILE", help="client certificate (mTLS)")
    parser.add_argument(
        "--cert-key", default=None, metavar="FILE", help="private key of --cert (mode 0600)"
    )


@dataclasses.dataclass(frozen=True)
class ClientOptions:
    headers: dict[str, str]
    tls: ssl.SSLContext | None


def client_options(
    args: argparse.Namespace, environ: Mapping[str, str] | None = None
) -> ClientOptions:
    """The token and TLS settings of `add_client_arguments`; ConfigError for bad ones."""
    env = os.environ if environ is None else environ
    token = args.token
    if token is None and args.token_file:
        token = read_secret_text(args.token_file, "--token-file").strip()
    if token is None:
        token = env.get(TOKEN_ENV)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    if bool(args.cert) != bool(args.cert_key):
        raise ConfigError("--cert and --cert-key: give both or neither")
    tls: ssl.SSLContext | None = None
    if args.cacert or args.cert:
        try:
            tls = ssl.create_default_context(cafile=args.cacert)
            if args.cert:
                check_private(args.cert_key, "--cert-key")
                tls.load_cert_chain(args.cert, args.cert_key)
        except (OSError, ssl.SSLError) as e:
            raise ConfigError(f"TLS options: {e}") from None
    return ClientOptions(headers, tls)


NO_OPTIONS = ClientOptions({}, None)


def client_session(options: ClientOptions, seconds: float) -> aiohttp.ClientSession:
    """A session (call inside the event loop) sending the token, trusting --cacert."""
    return aiohttp.ClientSession(
        timeout=aiohttp.ClientTimeout(total=seconds),
        headers=options.headers,
        connector=aiohttp.TCPConnector(ssl=options.tls if options.tls is not None else True),
    )


DEFAULT_MGMT = "http://127.0.0.1:8081"
"""Where the tools find fnlb's management API unless told (the original's default port)."""


class PeerError(Exception):
    """One peer refused or could not be reached; the message says which and why, `status`
    the HTTP status of a refusal (None when no answer came)."""

    def __init__(self, message: str, status: int | None = None, msg: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.msg = msg


def base_url(mgmt: str) -> str:
    """`host:port` or a URL -> a URL without a trailing slash."""
    mgmt = mgmt.strip().rstrip("/")
    return mgmt if "://" in mgmt else f"http://{mgmt}"


async def call(
    session: aiohttp.ClientSession, method: str, mgmt: str, path: str, body: Any = None
) -> dict[str, Any]:
    """`method` `path` on the peer at `mgmt`; its JSON object answer or PeerError."""
    url = redact_urls(base_url(mgmt)) + path
    try:
        async with session.request(method, base_url(mgmt) + path, json=body) as resp:
            try:
                answer: Any = await resp.json(content_type=None)
            except ValueError:
                answer = None
            if resp.status >= 300:
                msg = answer.get("msg") if isinstance(answer, dict) else None
                raise PeerError(
                    f"{url}: HTTP {resp.status}: {msg or resp.reason or 'refused'}",
                    resp.status,
                    msg,
                )
    except (aiohttp.ClientError, TimeoutError, ValueError) as e:
        detail = redact_urls(str(e)) or type(e).__name__
        raise PeerError(f"{url}: cannot reach the peer: {detail}") from None
    if not isinstance(answer, dict):
        raise PeerError(f"{url}: unexpected answer (not a JSON object): {answer!r:.200}")
    return answer
