"""Start, wait for and stop the benchmark's own server processes, by PID only.

Every process a benchmark starts goes through `ProcessGroup`, which stops exactly those PIDs
(SIGTERM, then SIGKILL after a grace period) when the `with` block ends, however it ends.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago (the kernel's pick), for a server to bind."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


def pinned(command: Sequence[str], cpus: Sequence[int] | None) -> list[str]:
    """`command` run on the given CPUs (via taskset, which execs: the PID stays the same)."""
    if not cpus or shutil.which("taskset") is None:
        return list(command)
    return ["taskset", "-c", ",".join(str(c) for c in cpus), *command]


@dataclass
class Started:
    """One process we started: its name in messages, its Popen and its log file."""

    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


class StartError(RuntimeError):
    """A server did not come up; the message carries the tail of its log."""


@dataclass
class ProcessGroup:
    """The processes one benchmark run owns; all of them are stopped on exit."""

    log_dir: Path
    nice: int = 0
    """Niceness for each started process's own scheduling group (see `set_priority`)."""
    started: list[Started] = field(default_factory=list)

    def start(
        self,
        name: str,
        command: Sequence[str],
        *,
        cwd: Path | None = None,
        env: dict[str, str] | None = None,
    ) -> Started:
        log = self.log_dir / f"{re.sub(r'[^A-Za-z0-9_.-]+', '_', name)}.log"
        with log.open("wb") as out:
            popen = subprocess.Popen(
                list(command),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=cwd,
                env=env,
                start_new_session=True,
            )
        proc = Started(name, popen, log)
        self.started.append(proc)
        if self.nice:
            set_priority(popen.pid, self.nice)
        return proc

    def stop_all(self, grace: float = 5.0) -> None:
        for proc in reversed(self.started):
            _stop(proc.popen, grace)
        self.started.clear()

    def __enter__(self) -> ProcessGroup:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop_all()


def _stop(popen: subprocess.Popen[bytes], grace: float) -> None:
    if popen.poll() is not None:
        return
    try:
        os.kill(popen.pid, signal.SIGTERM)
        popen.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        os.kill(popen.pid, signal.SIGKILL)
        popen.wait(timeout=grace)
    except ProcessLookupError:
        pass


def wait_http_ok(proc: Started, url: str, timeout: float) -> None:
    """Poll `url` until it answers 200, or raise StartError with the process's log."""
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        if proc.popen.poll() is not None:
            raise StartError(f"{proc.name} exited with {proc.popen.returncode}:\n{proc.log_tail()}")
        try:
            with urllib.request.urlopen(url, timeout=1.0) as resp:
                if resp.status == 200:
                    return
                last = f"HTTP {resp.status}"
        except urllib.error.HTTPError as e:
            last = f"HTTP {e.code}"
        except (OSError, urllib.error.URLError) as e:
            last = str(e)
        time.sleep(0.1)
    raise StartError(
        f"{proc.name}: {url} not ready after {timeout:.0f}s ({last}):\n{proc.log_tail()}"
    )


_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system, all threads) the process has used so far, from /proc.

    Per-call CPU time is the benchmark's noise-resistant figure: on a shared machine other
    work steals wall-clock time from a proxy, but not the CPU its own calls cost.
    """
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    # After "pid (comm) ", field 3 (state) is index 0; utime and stime are fields 14 and 15.
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS


def children(pid: int) -> list[int]:
    """The live child processes of `pid` (all its threads'), from /proc."""
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            out += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
    return out


def tree_cpu_seconds(pid: int) -> float:
    """`cpu_seconds` of `pid` and of every live descendant (an fnlb with -workers N)."""
    total = cpu_seconds(pid)
    for child in children(pid):
        try:
            total += tree_cpu_seconds(child)
        except OSError:  # it exited meanwhile
            continue
    return total


def tree_rss_kb(pid: int) -> list[int]:
    """Resident memory (kB) of `pid` and of each of its descendants, `pid` first."""
    sizes: list[int] = []
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            sizes.append(int(line.split()[1]))
    for child in children(pid):
        try:
            sizes += tree_rss_kb(child)
        except OSError:
            continue
    return sizes


def set_priority(pid: int, nice: int) -> bool:
    """Give `pid` niceness `nice`, also across sessions; False if the kernel refuses.

    With the kernel's autogroup scheduling (Linux desktops and this VM), niceness only
    ranks processes within one session; sessions compete as equals. Each server here runs
    in its own session, so its session's group gets the niceness too.
    """
    ok = True
    try:
        os.setpriority(os.PRIO_PROCESS, pid, nice)
    except OSError:
        ok = False
    # Without autogroup scheduling there is no file: the process niceness above is what counts.
    with contextlib.suppress(OSError):
        Path(f"/proc/{pid}/autogroup").write_text(f"{nice}\n")
    return ok


def autogroup_nice(pid: int) -> int | None:
    """The niceness of `pid`'s autogroup, or None without autogroup scheduling.

    The file exists but is empty when the task sits in a cgroup rather than an autogroup
    (containers, CI runners), so an unreadable or unparsable line means "none".
    """
    try:
        text = Path(f"/proc/{pid}/autogroup").read_text()
    except OSError:
        return None
    return parse_autogroup(text)


def parse_autogroup(text: str) -> int | None:
    """The niceness in a /proc/PID/autogroup line (`/autogroup-7 nice 0`), else None."""
    _, found, nice = text.rpartition(" nice ")
    try:
        return int(nice) if found else None
    except ValueError:
        return None
