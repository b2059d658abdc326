"""The generated nginx and HAProxy configurations are accepted by the real programs."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from bench._configs import haproxy_cfg, nginx_conf, nginx_proxy_conf


def test_haproxy_hashes_the_uri_consistently_with_keepalive() -> None:
    cfg = haproxy_cfg(8000, [8001, 8002, 8003], threads=1)
    for line in ("balance uri", "hash-type consistent", "http-reuse always", "nbthread 1"):
        assert line in cfg
    assert cfg.count("  server n") == 3
    assert "nbthread" not in haproxy_cfg(8000, [8001], threads=None)


def test_haproxy_bounded_load_and_round_robin_as_bench_routing_compares_them() -> None:
    bounded = haproxy_cfg(8000, [8001, 8002], balance="uri", hash_balance_factor=125)
    assert "hash-balance-factor 125" in bounded
    assert "hash-type consistent" in bounded
    rr = haproxy_cfg(8000, [8001, 8002], balance="roundrobin")
    assert "balance roundrobin" in rr
    assert "hash" not in rr
    with pytest.raises(ValueError, match="not built"):
        haproxy_cfg(8000, [8001], balance="roundrobin", hash_balance_factor=125)


@pytest.mark.skipif(shutil.which("haproxy") is None, reason="haproxy not installed")
@pytest.mark.parametrize(("balance", "factor"), [("uri", None), ("uri", 125), ("roundrobin", None)])
def test_haproxy_accepts_the_config(tmp_path: Path, balance: str, factor: int | None) -> None:
    path = tmp_path / "h.cfg"
    path.write_text(
        haproxy_cfg(8000, [8001, 8002], threads=1, balance=balance, hash_balance_factor=factor)
    )
    done = subprocess.run(
        ["haproxy", "-c", "-q", "-f", str(path)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.skipif(shutil.which("nginx") is None, reason="nginx not installed")
def test_nginx_accepts_the_config(tmp_path: Path) -> None:
    path = tmp_path / "nginx.conf"
    path.write_text(nginx_conf([8001, 8002], tmp_path))
    (tmp_path / "nginx-body").mkdir()
    nginx_accepts(path, tmp_path)


@pytest.mark.skipif(shutil.which("nginx") is None, reason="nginx not installed")
def test_nginx_accepts_the_proxy_config(tmp_path: Path) -> None:
    path = tmp_path / "nginx-proxy.conf"
    path.write_text(nginx_proxy_conf(8000, [8001, 8002], tmp_path))
    for sub in ("nginx-proxy-body", "nginx-proxy-temp"):
        (tmp_path / sub).mkdir()
    nginx_accepts(path, tmp_path)


def nginx_accepts(path: Path, prefix: Path) -> None:
    """`nginx -t` accepts the config at `path`, with `prefix` as its directory."""
    command = ["nginx", "-t", "-q", "-e", str(prefix / "err.log"), "-p", str(prefix)]
    done = subprocess.run([*command, "-c", str(path)], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
