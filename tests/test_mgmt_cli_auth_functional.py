"""`fnlb nodes|keys|cluster` send the management token and speak TLS, as the peers ask."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

from testkit.peers import peers
from tests.support import running_balancer
from tests.support_tls import TestCa

TOKEN = "cli-token-0123456789abcdef"


async def fnlb(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if k != "FNLB_MGMT_TOKEN"}
    return await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "fnlb", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**environ, **(env or {})},
    )


def secret(path: Path, text: str) -> str:
    path.write_text(text)
    path.chmod(0o600)
    return str(path)


async def test_nodes_sends_the_token_from_flag_file_or_environment(tmp_path: Path) -> None:
    tokens = secret(tmp_path / "tokens", f"ops:{TOKEN}\n")
    token_file = secret(tmp_path / "token", f"{TOKEN}\n")
    async with running_balancer(mgmt_tokens_file=tokens) as lb:
        mgmt = f"http://{lb.mgmt_address}"
        refused = await fnlb("nodes", "add", "127.0.0.1:1", "--mgmt", mgmt)
        assert refused.returncode == 1
        assert "HTTP 401: this needs a management token" in refused.stderr
        by_flag = await fnlb("nodes", "add", "127.0.0.1:1", "--mgmt", mgmt, "--token", TOKEN)
        assert by_flag.returncode == 0, by_flag.stderr
        by_file = await fnlb(
            "nodes", "rm", "127.0.0.1:1", "--mgmt", mgmt, "--token-file", token_file
        )
        assert by_file.returncode == 0, by_file.stderr
        by_env = await fnlb(
            "nodes", "add", "127.0.0.1:2", "--mgmt", mgmt, env={"FNLB_MGMT_TOKEN": TOKEN}
        )
        assert by_env.returncode == 0, by_env.stderr
        assert list(lb.peer.view.states) == ["127.0.0.1:2"]
        os.chmod(token_file, 0o644)
        lax = await fnlb("nodes", "ls", "--mgmt", mgmt, "--token-file", token_file)
        assert lax.returncode == 2
        assert "chmod 600" in lax.stderr


async def test_keys_and_cluster_status_send_the_token(tmp_path: Path) -> None:
    tokens = secret(tmp_path / "tokens", f"ops:{TOKEN}:read\n")
    key = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="
    async with peers(1, mgmt_tokens_file=tokens, gossip_insecure=False, gossip_key=key) as group:
        mgmt = f"http://{group[0].mgmt_address}"
        refused = await fnlb("keys", "list", "--mgmt", mgmt)
        assert refused.returncode == 1
        assert "HTTP 401" in refused.stderr
        listed = await fnlb("keys", "list", "--mgmt", mgmt, "--token", TOKEN)
        assert listed.returncode == 0, listed.stderr
        assert "primary (seals new packets)" in listed.stdout  # the listing is a table
        status = await fnlb("cluster", "status", "--mgmt", mgmt, "--token", TOKEN)
        assert status.returncode == 0, status.stderr


async def test_nodes_over_mutual_tls(tmp_path: Path) -> None:
    ca = TestCa(tmp_path)
    server, operator = ca.issue("server"), ca.issue("operator", server=False)
    async with running_balancer(
        mgmt_tls_cert=str(server.cert),
        mgmt_tls_key=str(server.key),
        mgmt_tls_client_ca=str(ca.cert),
    ) as lb:
        mgmt = f"https://{lb.mgmt_address}"
        tls = ("--cacert", str(ca.cert), "--cert", str(operator.cert))
        ok = await fnlb(
            "nodes", "add", "127.0.0.1:1", "--mgmt", mgmt, *tls, "--cert-key", str(operator.key)
        )
        assert ok.returncode == 0, ok.stderr
        no_cert = await fnlb("nodes", "ls", "--mgmt", mgmt, "--cacert", str(ca.cert))
        assert no_cert.returncode == 1
        assert "cannot reach the peer" in no_cert.stderr
        half = await fnlb("nodes", "ls", "--mgmt", mgmt, *tls)
        assert half.returncode == 2
        assert "--cert and --cert-key" in half.stderr
