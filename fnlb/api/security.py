"""The management plane's security, put together for the composition root (fnlb/server.py).

`validate_security` refuses, at start and with a message naming the flag, settings that would
run an unsafe or broken management plane; `ManagementSecurity` holds what a running fnlb
needs: the token middleware (fnlb/api/auth.py), the audit trail (fnlb/api/audit.py), the TLS
contexts of both listeners (fnlb/tls.py), and `reload()` for SIGHUP.

The rule for an open management API (no token configured): a lone fnlb keeps the original's
behaviour, open on whatever port. A cluster peer refuses to start with an open API on its
traffic port (`-listen` equal to `-mgmt-listen`, the original's default `:8081`): there,
anyone who can call a function could rewrite the node list of the whole cluster and install
gossip keys. `-mgmt-insecure` says the operator wants that anyway (a demo, a trusted
network). An open API on a separate management port is allowed (a cluster peer warns at start):
that is the original's way of keeping it private, by binding it to a private address.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Callable

from aiohttp import web
from aiohttp.typedefs import Middleware

from fnlb.api.audit import AuditLog
from fnlb.api.auth import Authenticator, TokenTable, load_tokens
from fnlb.config import Settings, parse_listen
from fnlb.errors import ConfigError
from fnlb.tls import ServerTls

log = logging.getLogger("fnlb.security")


def shares_port(s: Settings) -> bool:
    """One listener for calls and the API (port 0 asks the OS for one port per listener)."""
    return s.listen == s.mgmt_listen and parse_listen(s.listen)[1] != 0


def validate_security(s: Settings) -> None:
    """ConfigError for management security settings that cannot work or are unsafe."""
    _checked(s)


def _checked(s: Settings) -> tuple[TokenTable, ServerTls | None, ServerTls | None]:
    """The tokens and listener TLS `s` asks for, loaded; ConfigError (see validate_security)."""
    for cert, key in (("tls_cert", "tls_key"), ("mgmt_tls_cert", "mgmt_tls_key")):
        if bool(getattr(s, cert)) != bool(getattr(s, key)):
            flags = f"-{cert.replace('_', '-')} and -{key.replace('_', '-')}"
            raise ConfigError(f"{flags}: give both or neither")
    shared = shares_port(s)
    if shared and (s.mgmt_tls_cert or s.mgmt_tls_client_ca):
        raise ConfigError(
            "-mgmt-tls-*: calls and the management API share one listener (-listen equals "
            "-mgmt-listen): -tls-cert/-tls-key cover both; client certificates need a separate "
            "-mgmt-listen"
        )
    if s.mgmt_tls_client_ca and not s.mgmt_tls_cert:
        raise ConfigError("-mgmt-tls-client-ca: needs -mgmt-tls-cert and -mgmt-tls-key")
    tokens = load_tokens(s.mgmt_tokens_file, s.mgmt_token)
    if s.cluster_mode and shared and not tokens and not s.mgmt_insecure:
        raise ConfigError(
            f"cluster mode with the management API open on the traffic port {s.listen}: anyone "
            "who can call a function could change the cluster's node list and gossip keys. "
            "Give tokens (-mgmt-tokens-file FILE or FNLB_MGMT_TOKEN), or a separate private "
            "-mgmt-listen, or pass -mgmt-insecure to run it open anyway"
        )
    return (tokens, *_listener_tls(s))  # the files load (key files private) or ConfigError


def _listener_tls(s: Settings) -> tuple[ServerTls | None, ServerTls | None]:
    """(traffic TLS, management TLS); on a shared port both are the traffic one."""
    traffic = ServerTls(s.tls_cert, s.tls_key, flag="-tls") if s.tls_cert else None
    if shares_port(s):
        return traffic, traffic
    mgmt = (
        ServerTls(s.mgmt_tls_cert, s.mgmt_tls_key, s.mgmt_tls_client_ca, flag="-mgmt-tls")
        if s.mgmt_tls_cert
        else None
    )
    return traffic, mgmt


class ManagementSecurity:
    """Tokens, audit and TLS of one running fnlb; `peer` names it in audit records."""

    def __init__(self, settings: Settings, peer: Callable[[], str]) -> None:
        tokens, self._traffic_tls, self._mgmt_tls = _checked(settings)  # refusals included
        self.auth = Authenticator(settings.mgmt_tokens_file, settings.mgmt_token, tokens)
        self.audit = AuditLog(peer)
        if settings.cluster_mode and not self.auth.table:
            log.warning(
                "the management API needs no token: anyone who reaches -mgmt-listen can change "
                "the node list (give -mgmt-tokens-file or FNLB_MGMT_TOKEN; docs/security.md)",
                extra={"mgmt": settings.mgmt_listen},
            )

    def middlewares(self, errors_as_json: Middleware) -> list[Middleware]:
        """The management app's middlewares, outermost first: the audit (it sees every change
        attempt, refused ones included, with the status answered), `errors_as_json`, then the
        token check."""
        if not self.auth.table:  # no token now nor after a reload: no check on any request
            return [self.audit.middleware, errors_as_json]
        return [self.audit.middleware, errors_as_json, self.auth.middleware]

    def add_routes(self, app: web.Application) -> None:
        self.audit.add_routes(app)

    @property
    def traffic_ssl(self) -> ssl.SSLContext | None:
        return self._traffic_tls.context if self._traffic_tls else None

    @property
    def mgmt_ssl(self) -> ssl.SSLContext | None:
        return self._mgmt_tls.context if self._mgmt_tls else None

    def reload(self) -> None:
        """SIGHUP: read tokens and certificates again; what fails to load keeps the old."""
        self.auth.reload()
        listeners = [("traffic", self._traffic_tls)]
        if self._mgmt_tls is not self._traffic_tls:  # a shared port has one listener
            listeners.append(("management", self._mgmt_tls))
        for name, tls in listeners:
            if tls is None:
                continue
            try:
                tls.reload()
            except ConfigError as e:
                log.error("TLS files not reloaded; the old ones stay", extra={"error": e})
                continue
            log.info("TLS files reloaded", extra={"listener": name})
