"""Finding and trusting the API server: the pod's service account, or a kubeconfig."""

from __future__ import annotations

import base64
import json
import ssl
from pathlib import Path
from typing import Any

import pytest

from fnlb.discovery.k8s_client import PodWatcher
from fnlb.discovery.k8s_config import api_access, from_kubeconfig, in_cluster
from fnlb.errors import ConfigError
from testkit.k8s_apiserver import FakeApiServer
from testkit.k8s_pods import pod
from tests.discovery.tls import make_pki
from tests.support import wait_for


def service_account(tmp_path: Path, ca: bytes = b"", token: str = "token-1") -> Path:
    sa = tmp_path / "serviceaccount"
    sa.mkdir()
    (sa / "token").write_text(token)
    (sa / "namespace").write_text("fn\n")
    (sa / "ca.crt").write_bytes(ca)
    return sa


def test_in_a_pod_the_service_account_gives_server_ca_token_and_namespace(
    tmp_path: Path,
) -> None:
    sa = service_account(tmp_path)
    env = {"KUBERNETES_SERVICE_HOST": "10.96.0.1", "KUBERNETES_SERVICE_PORT": "443"}
    access = in_cluster(env, sa)
    assert access.server == "https://10.96.0.1:443"
    assert access.namespace == "fn"
    assert access.ca_file == str(sa / "ca.crt")
    assert access.bearer_token() == "token-1"
    (sa / "token").write_text("token-2")  # the kubelet rotated it
    assert access.bearer_token() == "token-2"
    assert in_cluster(env, sa, namespace="other").namespace == "other"
    v6 = in_cluster({**env, "KUBERNETES_SERVICE_HOST": "fd00::1"}, sa)
    assert v6.server == "https://[fd00::1]:443"


def test_outside_a_pod_in_cluster_config_says_to_give_a_kubeconfig(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--kubeconfig"):
        in_cluster({}, tmp_path)


def write_config(tmp_path: Path, user: dict[str, Any], cluster: dict[str, Any]) -> str:
    doc = {
        "current-context": "ctx",
        "contexts": [{"name": "ctx", "context": {"cluster": "c", "user": "u"}}],
        "clusters": [{"name": "c", "cluster": cluster}],
        "users": [{"name": "u", "user": user}],
    }
    path = tmp_path / "config"
    path.write_text(json.dumps(doc))
    return str(path)


def test_a_kubeconfig_gives_paths_relative_to_itself_and_decodes_data(tmp_path: Path) -> None:
    path = write_config(
        tmp_path,
        {"tokenFile": "tok", "client-certificate-data": base64.b64encode(b"C").decode(),
         "client-key-data": base64.b64encode(b"K").decode()},
        {"server": "https://k8s.example:6443/", "certificate-authority": "ca.pem"},
    )  # fmt: skip
    access = from_kubeconfig(path)
    assert access.server == "https://k8s.example:6443"
    assert access.namespace == "default"
    assert access.ca_file == str(tmp_path / "ca.pem")
    assert access.token_file == str(tmp_path / "tok")
    assert (access.cert_data, access.key_data) == (b"C", b"K")


@pytest.mark.parametrize(
    ("user", "cluster", "needle"),
    [
        ({"exec": {"command": "aws"}}, {"server": "https://x"}, "plugin"),
        ({}, {}, r"no http\(s\) server"),
        ({"client-key-data": "!!"}, {"server": "https://x"}, "not base64"),
    ],
)
def test_kubeconfigs_fnlb_cannot_use_are_refused_clearly(
    tmp_path: Path, user: dict[str, Any], cluster: dict[str, Any], needle: str
) -> None:
    with pytest.raises(ConfigError, match=needle):
        from_kubeconfig(write_config(tmp_path, user, cluster))


def test_a_kubeconfig_without_the_current_context_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "config"
    path.write_text("current-context: nowhere\ncontexts: []\n")
    with pytest.raises(ConfigError, match="no context 'nowhere'"):
        from_kubeconfig(str(path))
    path.write_text(": : not yaml")
    with pytest.raises(ConfigError, match="YAML"):
        from_kubeconfig(str(path))


async def test_the_cluster_ca_is_what_the_api_server_is_trusted_by(tmp_path: Path) -> None:
    pki = make_pki(tmp_path)
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(pki.cert_file, pki.key_file)
    server = FakeApiServer(ssl=tls)
    await server.start()
    server.put(pod("fn-0", "10.1.0.1"))
    port = server.url.rsplit(":", 1)[1]
    env = {"KUBERNETES_SERVICE_HOST": "127.0.0.1", "KUBERNETES_SERVICE_PORT": port}
    trusted = in_cluster(env, service_account(tmp_path, pki.ca_pem))
    (tmp_path / "other").mkdir()
    other_ca = make_pki(tmp_path / "other")
    (tmp_path / "other-sa").mkdir()
    untrusted = in_cluster(env, service_account(tmp_path / "other-sa", other_ca.ca_pem))
    good = PodWatcher(trusted, "app=fn", 8080, lambda c: None)
    bad = PodWatcher(untrusted, "app=fn", 8080, lambda c: None, base_delay=0.05)
    await good.start()
    await bad.start()
    try:
        await wait_for(lambda: good.watch.nodes == {"10.1.0.1:8080"})
        await wait_for(lambda: "CERTIFICATE_VERIFY_FAILED" in bad.last_error)
        assert not bad.ready[0]
    finally:
        await good.stop()
        await bad.stop()
        await server.stop()


def test_which_configuration_is_used(tmp_path: Path) -> None:
    sa = service_account(tmp_path)
    env = {"KUBERNETES_SERVICE_HOST": "10.96.0.1", "KUBERNETES_SERVICE_PORT": "443"}
    given = write_config(tmp_path, {"token": "t"}, {"server": "https://given:6443"})
    assert api_access(given, "", env, sa).server == "https://given:6443"
    listed = f"{tmp_path}/missing:{given}"  # KUBECONFIG=a:b, as kubectl takes it
    assert api_access(listed, "", env, sa).server == "https://given:6443"
    assert api_access("", "", env, sa).server == "https://10.96.0.1:443"
    home = tmp_path / "home"
    (home / ".kube").mkdir(parents=True)
    with pytest.raises(ConfigError, match="not running in a Kubernetes pod"):
        api_access("", "", {}, sa, home)
    (home / ".kube" / "config").write_text(Path(given).read_text())
    assert api_access("", "", {}, sa, home).server == "https://given:6443"
