"""A process the harness started inside a Host: its log file and the signals faults send it.

Only processes started here are ever signalled, by their own pid. `ip netns exec` execs the
command in place, so the pid we hold is the program itself (fnlb, fnsim, ...): `kill9()` is a
real crash, `stop()` a real hung host (SIGSTOP: sockets stay open, nothing answers).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

#: the repository checkout (fnlb importable from here) and the cluster-tests directory
#: (the `harness` package importable from here); both go on the children's PYTHONPATH.
CLUSTER_TESTS_DIR = Path(__file__).resolve().parent.parent
REPO_ROOT = CLUSTER_TESTS_DIR.parent


def child_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for children: ours, with fnlb and the harness importable."""
    env = dict(os.environ)
    paths = [str(REPO_ROOT), str(CLUSTER_TESTS_DIR)]
    if env.get("PYTHONPATH"):
        paths.append(env["PYTHONPATH"])
    env["PYTHONPATH"] = os.pathsep.join(paths)
    env.setdefault("PYTHONUNBUFFERED", "1")
    if extra:
        env.update(extra)
    return env


def python_argv(*module_and_args: str) -> list[str]:
    """`[python, -m, module, args...]` with the interpreter running the tests."""
    return [sys.executable, "-m", *module_and_args]


class Process:
    """One child process started in a network namespace, its output kept in `log_path`."""

    def __init__(
        self,
        name: str,
        netns: str,
        argv: Sequence[str],
        log_path: Path,
        *,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
    ) -> None:
        self.name = name
        self.netns = netns
        self.argv = list(argv)
        self.log_path = log_path
        self._env = dict(env) if env is not None else None
        self._cwd = cwd
        with open(log_path, "ab") as log:
            log.write(f"--- start {time.strftime('%H:%M:%S')}: {' '.join(self.argv)}\n".encode())
            log.flush()
            # A session of its own: a SIGSTOP or a terminal's SIGINT meant for the tests
            # never reaches the child, and the child's signals never reach the tests.
            self.popen = subprocess.Popen(
                ["ip", "netns", "exec", netns, *self.argv],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=child_env(self._env),
                cwd=cwd,
                start_new_session=True,
            )

    @property
    def pid(self) -> int:
        return self.popen.pid

    @property
    def returncode(self) -> int | None:
        return self.popen.poll()

    def alive(self) -> bool:
        """True while the process has not exited (a stopped process is alive)."""
        return self.popen.poll() is None

    def _signal(self, sig: signal.Signals) -> None:
        if self.popen.poll() is None:
            os.kill(self.popen.pid, sig)

    def kill9(self) -> None:
        """Crash it: SIGKILL, no cleanup, sockets closed by the kernel. Reaps it."""
        self._signal(signal.SIGKILL)
        self.popen.wait(10)

    def stop(self) -> None:
        """Freeze it (SIGSTOP): a hung host whose sockets stay open and answer nothing."""
        self._signal(signal.SIGSTOP)

    def cont(self) -> None:
        """Thaw a stopped process (SIGCONT)."""
        self._signal(signal.SIGCONT)

    def terminate(self, timeout: float = 10.0) -> int:
        """SIGTERM (graceful: fnlb drains), then SIGKILL after `timeout` s; the exit code."""
        if self.popen.poll() is None:
            self.cont()  # a stopped process cannot act on SIGTERM
            self._signal(signal.SIGTERM)
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill9()
            return self.popen.wait()

    def wait(self, timeout: float | None = None) -> int:
        """Wait for it to exit; its exit code (negative: killed by that signal)."""
        return self.popen.wait(timeout)

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def log_tail(self, lines: int = 20) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def restarted(self) -> Process:
        """Start the same command again in the same Host (same state dir, same log file)."""
        if self.alive():
            raise RuntimeError(f"{self.name} (pid {self.pid}) is still running")
        return Process(
            self.name, self.netns, self.argv, self.log_path, env=self._env, cwd=self._cwd
        )

    def __repr__(self) -> str:
        state = "running" if self.alive() else f"exited {self.returncode}"
        return f"<Process {self.name} pid={self.pid} in {self.netns} {state}>"
