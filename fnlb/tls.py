"""TLS for fnlb's listeners: server contexts from PEM files, swapped in whole on reload.

Each listener keeps one `ServerTls`. Its `context` is what the listening socket was given; a
handshake on it picks the newest complete context through the SNI hook (OpenSSL calls it for
every ClientHello, with or without a server name), so `reload()` (on SIGHUP) replaces the
certificate, key and client CAs for new connections at once, and open connections keep the
one they started with. A reload whose files are bad (unreadable, mismatched, a key file others
can read) raises ConfigError and changes nothing: a certificate renewal gone wrong must not
take the listener down.

With `client_ca`, clients must present a certificate signed by one of its CAs (mutual TLS,
offered for the management listener). TLS 1.2 is the oldest version accepted.
"""

from __future__ import annotations

import ssl

from fnlb.errors import ConfigError
from fnlb.secret_files import check_private


class ServerTls:
    def __init__(self, cert: str, key: str, client_ca: str = "", *, flag: str = "-tls") -> None:
        self._cert = cert
        self._key = key
        self._client_ca = client_ca
        self._flag = flag
        self._current = self._build()
        self.context = self._build()
        self.context.sni_callback = self._pick

    def _build(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        check_private(self._key, f"{self._flag}-key")
        try:
            ctx.load_cert_chain(self._cert, self._key)
        except (OSError, ssl.SSLError) as e:
            raise ConfigError(
                f"{self._flag}-cert {self._cert} / {self._flag}-key {self._key}: cannot load a "
                f"certificate and its key: {_why(e)}"
            ) from None
        if self._client_ca:
            try:
                ctx.load_verify_locations(cafile=self._client_ca)
            except (OSError, ssl.SSLError) as e:
                raise ConfigError(
                    f"{self._flag}-client-ca {self._client_ca}: cannot load: {_why(e)}"
                ) from None
            ctx.verify_mode = ssl.CERT_REQUIRED
        return ctx

    def _pick(self, conn: ssl.SSLObject, server_name: str | None, ctx: ssl.SSLContext) -> None:
        conn.context = self._current

    def reload(self) -> None:
        """Read the files again and use them for new connections; ConfigError if bad."""
        self._current = self._build()


def _why(e: Exception) -> str:
    if isinstance(e, ssl.SSLError):
        return e.reason or str(e)
    if isinstance(e, OSError):
        return e.strerror or str(e)
    return str(e)
