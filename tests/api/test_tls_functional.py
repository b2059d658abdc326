"""TLS on the traffic and management listeners, client certificates, reload on SIGHUP."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import ssl
from pathlib import Path

import aiohttp
import pytest
from cryptography import x509

from fnlb.server import Balancer
from tests import support
from tests.support import Backend, running_balancer
from tests.support_proc import FnlbProcess
from tests.support_tls import Issued, TestCa


@pytest.fixture(params=["fast", "aiohttp"])
def data_plane(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """TLS on the traffic listener, on each data plane (the fast one: asyncio's TLS
    transport under the same protocols, the context's SNI hook picking reloaded files)."""
    plane: str = request.param
    monkeypatch.setitem(support.BALANCER_DEFAULTS, "data_plane", plane)
    return plane


def client_tls(ca: TestCa, client: Issued | None = None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(ca.cert))
    if client is not None:
        ctx.load_cert_chain(client.cert, client.key)
    return ctx


async def served_serial(host: str, port: int, ctx: ssl.SSLContext) -> int:
    """The serial number of the certificate a TLS listener presents now."""
    _, writer = await asyncio.open_connection(host, port, ssl=ctx)
    try:
        obj = writer.get_extra_info("ssl_object")
        der = obj.getpeercert(binary_form=True)
    finally:
        writer.close()
    return x509.load_der_x509_certificate(der).serial_number


def live_files(tmp_path: Path, issued: Issued) -> tuple[str, str]:
    cert, key = tmp_path / "live.crt", tmp_path / "live.key"
    shutil.copy(issued.cert, cert)
    shutil.copy(issued.key, key)
    key.chmod(0o600)
    return str(cert), str(key)


async def test_calls_over_tls_and_management_over_mutual_tls(
    tmp_path: Path, data_plane: str
) -> None:
    ca = TestCa(tmp_path)
    server, operator = ca.issue("server"), ca.issue("operator", server=False)
    stranger = TestCa(tmp_path, "other CA").issue("stranger", server=False)
    backend = Backend("n1")
    await backend.start()
    try:
        async with running_balancer(
            nodes=backend.address,
            tls_cert=str(server.cert),
            tls_key=str(server.key),
            mgmt_tls_cert=str(server.cert),
            mgmt_tls_key=str(server.key),
            mgmt_tls_client_ca=str(ca.cert),
        ) as lb:
            assert (lb.fast is not None) == (data_plane == "fast")
            calls = f"https://{lb.listen_address}/r/app/fn"
            mgmt = f"https://{lb.mgmt_address}/1/lb/nodes"
            async with aiohttp.ClientSession() as s:
                async with s.get(calls, ssl=client_tls(ca)) as r:
                    assert r.status == 200
                    assert (await r.json())["node"] == "n1"
                assert backend.seen[-1].headers["X-Forwarded-Proto"] == "https"
                with pytest.raises(aiohttp.ClientError):  # plain HTTP to a TLS port
                    async with s.get(f"http://{lb.listen_address}/r/app/fn"):
                        pass
                async with s.get(mgmt, ssl=client_tls(ca, operator)) as r:
                    assert r.status == 200
                    assert backend.address in (await r.json())["nodes"]
                for refused in (client_tls(ca), client_tls(ca, stranger)):
                    with pytest.raises(aiohttp.ClientError):
                        async with s.get(mgmt, ssl=refused) as r:
                            await r.read()
    finally:
        await backend.stop()


async def test_one_shared_port_serves_calls_and_the_api_over_tls(
    tmp_path: Path, data_plane: str
) -> None:
    from tests.support_proc import free_port

    ca = TestCa(tmp_path)
    server = ca.issue("server")
    port = free_port()
    shared = f"127.0.0.1:{port}"
    backend = Backend("n1")
    await backend.start()
    try:
        async with running_balancer(
            listen=shared,
            mgmt_listen=shared,
            nodes=backend.address,
            tls_cert=str(server.cert),
            tls_key=str(server.key),
        ) as lb:
            assert lb.listen_address == lb.mgmt_address
            assert (lb.fast is not None) == (data_plane == "fast")
            async with aiohttp.ClientSession() as s:
                # On the fast plane an API request is handed, TLS transport and all, to
                # aiohttp's server, which keeps the connection (and proxies what follows).
                async with s.get(f"https://{shared}/1/lb/nodes", ssl=client_tls(ca)) as r:
                    assert r.status == 200
                    assert backend.address in (await r.json())["nodes"]
                async with s.get(f"https://{shared}/r/app/fn", ssl=client_tls(ca)) as r:
                    assert r.status == 200
                    assert (await r.json())["node"] == "n1"
    finally:
        await backend.stop()


async def test_reload_serves_new_certificates_and_keeps_the_old_on_bad_files(
    tmp_path: Path, data_plane: str
) -> None:
    ca = TestCa(tmp_path)
    first, second = ca.issue("first"), ca.issue("second")
    cert, key = live_files(tmp_path, first)
    async with running_balancer(tls_cert=cert, tls_key=key) as lb:
        assert lb.listen_address is not None
        where = ("127.0.0.1", lb.listen_address.port, client_tls(ca))
        assert await served_serial(*where) == first.serial
        live_files(tmp_path, second)
        lb.security.reload()
        assert await served_serial(*where) == second.serial
        os.chmod(key, 0o644)  # a bad renewal: refused, the second certificate stays
        lb.security.reload()
        assert await served_serial(*where) == second.serial


async def test_sighup_reloads_a_running_fnlb(tmp_path: Path) -> None:
    ca = TestCa(tmp_path)
    first, second = ca.issue("first"), ca.issue("second")
    cert, key = live_files(tmp_path, first)
    proc = await asyncio.to_thread(FnlbProcess, f"-tls-cert={cert}", f"-tls-key={key}")
    try:
        where = ("127.0.0.1", proc.port, client_tls(ca))
        assert await served_serial(*where) == first.serial
        live_files(tmp_path, second)
        proc.signal(signal.SIGHUP)
        for _ in range(200):
            if await served_serial(*where) == second.serial:
                break
            await asyncio.sleep(0.05)
        assert await served_serial(*where) == second.serial
        assert proc.proc.poll() is None  # SIGHUP no longer ends the process
    finally:
        proc.stop()


def test_balancer_refuses_unreadable_tls_files(tmp_path: Path) -> None:
    from fnlb.config import Settings
    from fnlb.errors import ConfigError

    with pytest.raises(ConfigError, match="-tls-key"):
        Balancer(Settings(tls_cert=str(tmp_path / "x.crt"), tls_key=str(tmp_path / "x.key")))
