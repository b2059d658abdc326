"""Run `fnlb` as a real process on loopback for tests that need one (RSS, signals)."""

from __future__ import annotations

import os
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class FnlbProcess:
    def __init__(
        self, *args: str, shared_port: bool = False, mgmt_tls: ssl.SSLContext | None = None
    ) -> None:
        """`shared_port`: calls and the management API on one port (-listen = -mgmt-listen);
        `mgmt_tls`: the management API is served over TLS, checked with this context."""
        self.mgmt_tls = mgmt_tls
        self.port = free_port()
        self.mgmt_port = self.port if shared_port else free_port()
        self.proc = subprocess.Popen(
            [
                sys.executable, "-m", "fnlb", "serve",
                f"-listen=127.0.0.1:{self.port}", f"-mgmt-listen=127.0.0.1:{self.mgmt_port}",
                *args,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )  # fmt: skip
        deadline = time.monotonic() + 20
        while not self._listening():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.proc.kill()
                self.proc.wait(10)
                raise RuntimeError(f"fnlb did not start: {self.output()}") from None
            time.sleep(0.05)

    def _listening(self) -> bool:
        """Whether fnlb serves calls: the management API answers before `-workers` listen,
        so /readyz's reasons tell (a 503 for no nodes or no cluster yet still counts)."""
        try:
            url = self.mgmt_url("/readyz")
            with urllib.request.urlopen(url, timeout=1, context=self.mgmt_tls):
                return True
        except urllib.error.HTTPError as e:
            return e.code == 503 and b"not listening yet" not in e.read()
        except OSError:
            return False

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def mgmt_url(self, path: str) -> str:
        scheme = "http" if self.mgmt_tls is None else "https"
        return f"{scheme}://127.0.0.1:{self.mgmt_port}{path}"

    def status_kb(self, field: str) -> int:
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
        raise KeyError(field)

    def signal(self, sig: signal.Signals) -> None:
        os.kill(self.proc.pid, sig)

    def wait(self, timeout: float) -> int:
        return self.proc.wait(timeout)

    def read_until(self, needle: str) -> str:
        """The process's output line that contains `needle`, read while it runs (blocking:
        call it in a thread; it ends at the process's exit, with "" if never seen)."""
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if needle in line:
                return line
        return ""

    def output(self) -> str:
        if self.proc.poll() is None:
            return ""
        assert self.proc.stdout is not None
        text = self.proc.stdout.read()
        self.proc.stdout.close()
        return text

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
