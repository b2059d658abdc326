"""TLS on the traffic and management listeners, client certificates, reload on SIGHUP."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import ssl
from pathlib import Path

import aiohttp
import pytest
from cryptography import x509

from fnlb.cli import main
from fnlb.server import Balancer
from tests import support
from tests.support import Backend, running_balancer
from tests.support_proc import FnlbProcess
from tests.support_tls import Issued, TestCa
from tests.test_workers_functional import eventually, online, workers_of


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
        # TLS closes with a shutdown exchange: left running, its socket is collected
        # unclosed in whatever test runs next (a ResourceWarning there, failing it).
        with contextlib.suppress(OSError, ssl.SSLError, TimeoutError):
            async with asyncio.timeout(5):
                await writer.wait_closed()
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
        # With workers (one per CPU by default) old and new ones serve side by side while
        # the new ones start: the reload is done once every handshake shows the new files.
        in_a_row = 0
        for _ in range(400):
            in_a_row = in_a_row + 1 if await served_serial(*where) == second.serial else 0
            if in_a_row == 10:
                break
            await asyncio.sleep(0.05)
        assert in_a_row == 10
        assert proc.proc.poll() is None  # SIGHUP no longer ends the process
    finally:
        proc.stop()


def test_balancer_refuses_unreadable_tls_files(tmp_path: Path) -> None:
    from fnlb.config import Settings
    from fnlb.errors import ConfigError

    with pytest.raises(ConfigError, match="-tls-key"):
        Balancer(Settings(tls_cert=str(tmp_path / "x.crt"), tls_key=str(tmp_path / "x.key")))


async def test_workers_serve_tls_and_sighup_gives_them_renewed_files(tmp_path: Path) -> None:
    """-workers 2 with TLS on the traffic port (the API on its own): each worker loads the
    certificate; SIGHUP replaces the workers, which read the files anew; files that do not
    load leave the old workers, and the old certificate, in place."""
    ca = TestCa(tmp_path)
    first, second = ca.issue("first"), ca.issue("second")
    cert, key = live_files(tmp_path, first)
    backend = Backend("n1")
    await backend.start()
    proc = await asyncio.to_thread(
        FnlbProcess, f"-nodes={backend.address}", f"-tls-cert={cert}", f"-tls-key={key}",
        "-workers=2", "-hc-interval=0.2",
    )  # fmt: skip
    try:
        old = workers_of(proc)
        assert len(old) == 2
        where = ("127.0.0.1", proc.port, client_tls(ca))
        await online(proc, backend)
        for paused in old:  # each worker in turn takes every call: both serve TLS
            os.kill(paused, signal.SIGSTOP)
            try:
                assert await served_serial(*where) == first.serial
                async with (
                    aiohttp.ClientSession() as s,
                    s.post(proc.url("/r/app/fn").replace("http:", "https:"), ssl=where[2]) as r,
                ):
                    assert r.status == 200
                    assert (await r.json())["node"] == "n1"
            finally:
                os.kill(paused, signal.SIGCONT)
        await asyncio.to_thread(Path(key).write_text, "not a key")  # a renewal gone wrong
        proc.signal(signal.SIGHUP)
        async with asyncio.timeout(30):  # the thread ends when the process does (finally)
            line = await asyncio.to_thread(proc.read_until, "workers not")
        assert "workers not reloaded" in line
        assert workers_of(proc) == old
        assert await served_serial(*where) == first.serial
        live_files(tmp_path, second)
        proc.signal(signal.SIGHUP)
        async with asyncio.timeout(30):
            line = await asyncio.to_thread(proc.read_until, "workers reloaded")
        assert "workers reloaded" in line
        await eventually(lambda: not set(workers_of(proc)) & set(old))  # the old ones exited
        assert len(workers_of(proc)) == 2
        for _ in range(6):
            assert await served_serial(*where) == second.serial
    finally:
        proc.stop()
        await backend.stop()


async def test_tls_on_a_port_shared_with_the_api_is_one_process_by_default(
    tmp_path: Path,
) -> None:
    """A TLS session cannot be handed to the primary's API: on a shared port -workers' default
    is one process, which serves the API and calls over TLS (docs/proxy.md)."""
    ca = TestCa(tmp_path)
    server = ca.issue("server")
    proc = await asyncio.to_thread(
        FnlbProcess, f"-tls-cert={server.cert}", f"-tls-key={server.key}", shared_port=True,
        mgmt_tls=client_tls(ca),
    )  # fmt: skip
    try:
        assert workers_of(proc) == []
        async with (
            aiohttp.ClientSession() as s,
            s.get(f"https://127.0.0.1:{proc.port}/1/lb/nodes", ssl=client_tls(ca)) as r,
        ):
            assert r.status == 200
    finally:
        proc.stop()


def test_workers_with_tls_on_a_port_shared_with_the_api_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    server = TestCa(tmp_path).issue("server")
    argv = ["serve", "-listen=127.0.0.1:1", "-mgmt-listen=127.0.0.1:1", "-workers=2",
            f"-tls-cert={server.cert}", f"-tls-key={server.key}"]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "-workers with -tls-cert on a port shared with the management API" in err
    assert "Traceback" not in err
