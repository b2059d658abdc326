"""deploy/kubernetes renders with `kubectl kustomize` and every object is valid Kubernetes.

Offline: kubectl's built-in kustomize renders the manifests, and kubernetes-validate (PyPI)
checks each object strictly against the JSON schemas of a current Kubernetes release, which
it ships. Then the properties #13 asks for are checked on the rendered objects.
"""

from __future__ import annotations

import argparse
import base64
import shutil
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml

from fnlb.cli.keygen import new_key
from fnlb.config import add_settings_arguments, settings_from
from testkit.k8s_apiserver import selector_matches

DEPLOY = Path(__file__).resolve().parent.parent / "deploy" / "kubernetes"
VARIANTS = {"deployment": DEPLOY, "daemonset": DEPLOY / "daemonset"}
KUBECTL = shutil.which("kubectl")

pytestmark = pytest.mark.skipif(
    KUBECTL is None, reason="kubectl is not installed (scripts/bootstrap.sh installs it)"
)


def render(path: Path) -> list[dict[str, Any]]:
    assert KUBECTL is not None
    out = subprocess.run(
        [KUBECTL, "kustomize", str(path)], capture_output=True, text=True, timeout=60, check=True
    ).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


def by_kind(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == kind]


def fnlb_workload(objects: list[dict[str, Any]]) -> dict[str, Any]:
    (workload,) = [
        o
        for o in objects
        if o["kind"] in ("Deployment", "DaemonSet") and o["metadata"]["name"] == "fnlb"
    ]
    return workload


@pytest.fixture(scope="module", params=sorted(VARIANTS))
def rendered(request: pytest.FixtureRequest) -> list[dict[str, Any]]:
    return render(VARIANTS[request.param])


def test_every_object_is_valid_against_current_kubernetes(rendered: list[dict[str, Any]]) -> None:
    version = kubernetes_validate.latest_version()
    for obj in rendered:
        kubernetes_validate.validate(obj, version, strict=True)  # raises on any error


def test_the_variants_hold_what_a_deployment_needs(rendered: list[dict[str, Any]]) -> None:
    kinds = {o["kind"] for o in rendered}
    assert {
        "Namespace",
        "ServiceAccount",
        "Role",
        "RoleBinding",
        "Service",
        "PodDisruptionBudget",
        "Deployment",
    } <= kinds
    services = {s["metadata"]["name"]: s["spec"] for s in by_kind(rendered, "Service")}
    assert set(services) == {"fnlb", "fnlb-mgmt", "fnlb-gossip"}
    assert services["fnlb-gossip"]["clusterIP"] == "None"
    assert services["fnlb-gossip"]["publishNotReadyAddresses"] is True


def test_the_role_only_reads_pods(rendered: list[dict[str, Any]]) -> None:
    (role,) = by_kind(rendered, "Role")
    assert role["rules"] == [
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]}
    ]
    (binding,) = by_kind(rendered, "RoleBinding")
    assert (
        binding["subjects"][0]["name"]
        == fnlb_workload(rendered)["spec"]["template"]["spec"]["serviceAccountName"]
    )


def test_fnlb_pods_are_locked_down_probed_and_drain(rendered: list[dict[str, Any]]) -> None:
    pod = fnlb_workload(rendered)["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    (c,) = pod["containers"]
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    assert c["securityContext"]["allowPrivilegeEscalation"] is False
    assert set(c["resources"]["requests"]) == {"cpu", "memory"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "mgmt"}
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "mgmt"}
    assert "preStop" in c["lifecycle"]


def test_fnlbs_arguments_are_flags_fnlb_accepts_and_select_the_fn_pods(
    rendered: list[dict[str, Any]],
) -> None:
    (c,) = fnlb_workload(rendered)["spec"]["template"]["spec"]["containers"]
    assert c["args"][0] == "serve"
    parser = argparse.ArgumentParser()
    add_settings_arguments(parser)
    env = {e["name"]: e.get("value", "") for e in c["env"]}
    assert env["FNLB_ADVERTISE"] == "$(POD_IP):8946"  # expanded by the kubelet
    key = base64.b64encode(new_key()).decode()  # the Secret the docs tell to create
    settings = settings_from(parser.parse_args(c["args"][1:]), environ={"FNLB_GOSSIP_KEY": key})
    assert settings.db == "k8s"
    assert settings.join == ("fnlb-gossip.fn.svc.cluster.local",)
    fn = [d for d in by_kind(rendered, "Deployment") if d["metadata"]["name"] != "fnlb"]
    (fn_labels,) = [d["spec"]["template"]["metadata"]["labels"] for d in fn]
    assert selector_matches(settings.label_selector, fn_labels)


def test_the_daemonset_runs_the_same_pod_as_the_deployment() -> None:
    deployment = fnlb_workload(render(VARIANTS["deployment"]))
    daemonset = fnlb_workload(render(VARIANTS["daemonset"]))
    assert daemonset["kind"] == "DaemonSet"
    assert daemonset["spec"]["template"] == deployment["spec"]["template"]
