"""Where the Kubernetes API is and how fnlb proves who it is: in-cluster or a kubeconfig.

In a pod (the usual case) the service account gives everything: the API server at
`https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT`, the cluster CA in `ca.crt`, the
namespace, and a bearer token that the kubelet rotates (bound tokens expire within the hour):
`bearer_token()` reads the file again for every request, so a rotated token is picked up on the
next reconnect without a restart. Outside a cluster, `--kubeconfig` (or `KUBECONFIG`) names a
kubeconfig file; its current context's cluster and user are used (server, CA, token or token
file, client certificate). Exec and auth-provider plugins are refused with a clear message:
they run programs, which fnlb does not.
"""

from __future__ import annotations

import base64
import contextlib
import os
import ssl
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fnlb.errors import ConfigError

SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")


@dataclass(frozen=True, slots=True)
class ApiAccess:
    """How to reach and authenticate to one API server."""

    server: str
    namespace: str
    ca_file: str | None = None
    ca_data: bytes | None = None
    token: str | None = None
    token_file: str | None = None
    cert_data: bytes | None = None
    key_data: bytes | None = None
    cert_file: str | None = None
    key_file: str | None = None
    insecure: bool = False

    def bearer_token(self) -> str | None:
        """The token to send now: the token file read afresh (it rotates), else the fixed one."""
        if self.token_file:
            try:
                return Path(self.token_file).read_text().strip() or None
            except OSError:
                return None  # mid-rotation or gone: the API server's 401 will say so
        return self.token

    def ssl_context(self) -> ssl.SSLContext | None:
        """TLS settings for an https server (None for plain http, e.g. `kubectl proxy`)."""
        if not self.server.startswith("https://"):
            return None
        ctx = ssl.create_default_context(
            cafile=self.ca_file, cadata=self.ca_data.decode() if self.ca_data else None
        )
        if self.insecure:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        if self.cert_file and self.key_file:
            ctx.load_cert_chain(self.cert_file, self.key_file)
        elif self.cert_data and self.key_data:
            _load_cert_data(ctx, self.cert_data, self.key_data)
        return ctx


def _load_cert_data(ctx: ssl.SSLContext, cert: bytes, key: bytes) -> None:
    """ssl only loads a client certificate from files: write them privately, load, delete."""
    with tempfile.TemporaryDirectory(prefix="fnlb-k8s-") as tmp:
        cert_path, key_path = Path(tmp, "cert.pem"), Path(tmp, "key.pem")
        for path, data in ((cert_path, cert), (key_path, key)):
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(data)
        ctx.load_cert_chain(str(cert_path), str(key_path))


def in_cluster(
    environ: Mapping[str, str], sa_dir: Path = SERVICE_ACCOUNT_DIR, namespace: str = ""
) -> ApiAccess:
    """The pod's own service account; ConfigError when fnlb does not run in a pod."""
    host = environ.get("KUBERNETES_SERVICE_HOST", "")
    port = environ.get("KUBERNETES_SERVICE_PORT", "")
    token = sa_dir / "token"
    if not host or not port or not token.exists():
        raise ConfigError(
            "-db=k8s: not running in a Kubernetes pod (no KUBERNETES_SERVICE_HOST or no "
            f"service-account token in {sa_dir}); outside a cluster give --kubeconfig FILE"
        )
    if not namespace:
        with contextlib.suppress(OSError):
            namespace = (sa_dir / "namespace").read_text().strip()
    host = f"[{host}]" if ":" in host else host
    return ApiAccess(
        server=f"https://{host}:{port}",
        namespace=namespace or "default",
        ca_file=str(sa_dir / "ca.crt"),
        token_file=str(token),
    )


def from_kubeconfig(path: str, namespace: str = "") -> ApiAccess:
    """The current context of a kubeconfig file; ConfigError saying what is missing."""
    import yaml  # only needed outside a cluster

    where = f"--kubeconfig {path}"
    try:
        doc = yaml.safe_load(Path(path).read_text())
    except OSError as e:
        raise ConfigError(f"{where}: cannot read it: {e.strerror}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{where}: not valid YAML: {e}") from None
    if not isinstance(doc, dict):
        raise ConfigError(f"{where}: not a kubeconfig (no mapping at the top)")
    current = doc.get("current-context")
    context = _named(doc, "contexts", "context", current, where)
    cluster = _named(doc, "clusters", "cluster", context.get("cluster"), where)
    user_name = context.get("user")
    user = _named(doc, "users", "user", user_name, where) if user_name else {}
    if "exec" in user or "auth-provider" in user:
        raise ConfigError(
            f"{where}: user {user_name!r} authenticates through a plugin (exec/auth-provider), "
            "which fnlb does not run; use a token, a token file or a client certificate"
        )
    server = cluster.get("server")
    if not isinstance(server, str) or not server.startswith(("https://", "http://")):
        raise ConfigError(f"{where}: cluster {context.get('cluster')!r} has no http(s) server")
    base = Path(path).resolve().parent

    def file(value: Any) -> str | None:
        return str(base / value) if isinstance(value, str) and value else None

    def data(value: Any, what: str) -> bytes | None:
        if not isinstance(value, str) or not value:
            return None
        try:
            return base64.b64decode(value, validate=True)
        except ValueError:
            raise ConfigError(f"{where}: {what} is not base64") from None

    ns = namespace or context.get("namespace") or "default"
    return ApiAccess(
        server=server.rstrip("/"),
        namespace=str(ns),
        ca_file=file(cluster.get("certificate-authority")),
        ca_data=data(cluster.get("certificate-authority-data"), "certificate-authority-data"),
        insecure=bool(cluster.get("insecure-skip-tls-verify", False)),
        token=user.get("token") if isinstance(user.get("token"), str) else None,
        token_file=file(user.get("tokenFile")),
        cert_file=file(user.get("client-certificate")),
        key_file=file(user.get("client-key")),
        cert_data=data(user.get("client-certificate-data"), "client-certificate-data"),
        key_data=data(user.get("client-key-data"), "client-key-data"),
    )


def _named(doc: Mapping[str, Any], section: str, kind: str, name: Any, where: str) -> Any:
    if not isinstance(name, str) or not name:
        raise ConfigError(f"{where}: no {kind} named (is current-context set?)")
    for item in doc.get(section) or []:
        if isinstance(item, dict) and item.get("name") == name:
            body = item.get(kind)
            if isinstance(body, dict):
                return body
    raise ConfigError(f"{where}: no {kind} {name!r} in {section}")


def api_access(
    kubeconfig: str,
    namespace: str,
    environ: Mapping[str, str],
    sa_dir: Path = SERVICE_ACCOUNT_DIR,
    home: Path | None = None,
) -> ApiAccess:
    """`--kubeconfig` when given, else the pod's service account, else `~/.kube/config`.

    Like kubectl, a `KUBECONFIG` list (`a:b`) is accepted; its first existing file is used
    (fnlb does not merge several files).
    """
    if kubeconfig:
        paths = [p for p in kubeconfig.split(os.pathsep) if p]
        existing = [p for p in paths if Path(p).is_file()]
        return from_kubeconfig(existing[0] if existing else paths[0], namespace)
    try:
        return in_cluster(environ, sa_dir, namespace)
    except ConfigError:
        default = (home or Path.home()) / ".kube" / "config"
        if default.is_file():
            return from_kubeconfig(str(default), namespace)
        raise
