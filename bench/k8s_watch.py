"""-db=k8s figures: pod event -> routable on every peer, relist time and RSS, reconnection.

Against the loopback test API server of the test suite (testkit/k8s_apiserver.py, a real
aiohttp server speaking the list/watch protocol):

1. **Event -> routable on every peer.** Three fnlb peers (in this process, cluster mode,
   gossip on 127.0.0.1) watch 5 Fn pods. Each trial marks one pod unready at t0 (the API
   server writes the MODIFIED event) and polls every peer's routable set every millisecond
   until the pod is gone from all three; then makes it ready again and times its return. The
   figure per trial is the slowest peer. The target (#13): within 1 s.
2. **Relist.** A pod watcher lists 1,000 matching pods (2 pages of 500) next to 1,000
   unrelated ones; then the history is compacted and the stream cut, so its next watch gets
   410 and it lists again: the time from the cut to the new set applied.
3. **RSS.** A real `fnlb serve -db=k8s` process (health checks every 30 s to loopback pod
   addresses that refuse at once) with 0 and with 1,000 ready pods: VmRSS once /readyz says
   ready (0 pods: once the pod list arrived).
4. **Reconnect.** The API server cuts the watch stream and at once adds a pod: the time until
   the watcher holds it (a re-watch from the last resourceVersion, no relist). A stream that
   had lived 1 s or delivered an event is resumed at once; one that broke younger and empty
   is backed off first (0.25-0.5 s, doubling), which 2 and 4 avoid by letting it live.

Rerun (from the repository root; ~30 s on 2 cores):

    python -m bench.k8s_watch                 # 50 trials of 1 and 4
    python -m bench.k8s_watch --trials 200

Everything listens on 127.0.0.0/8 and the fnlb child process is stopped by its PID.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a file: make `fnlb` importable from the repo root
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import aiohttp

from bench._procs import free_port
from bench.routing_workload import percentile
from fnlb.discovery.k8s_client import PodWatcher
from fnlb.discovery.k8s_config import from_kubeconfig
from fnlb.discovery.k8s_watch import QUICK_END_S
from testkit.k8s_apiserver import FakeApiServer, fn_pods
from testkit.k8s_pods import IPS, pod
from testkit.peers import peers


def row(name: str, values: list[float], unit: str = "ms") -> str:
    v = sorted(values)
    return (
        f"| {name} | {len(v)} | {percentile(v, 0.5):.1f} | {percentile(v, 0.99):.1f} | "
        f"{v[-1]:.1f} | {unit} |"
    )


async def until(check: Callable[[], bool], limit: float = 10.0) -> float:
    """Seconds until `check()` holds, polled every millisecond; raise after `limit`."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    while not check():
        if loop.time() - start > limit:
            raise TimeoutError("condition not reached")
        await asyncio.sleep(0.001)
    return loop.time() - start


@contextlib.asynccontextmanager
async def api_server(tmp: Path) -> AsyncIterator[tuple[FakeApiServer, Path]]:
    server = FakeApiServer(history=100_000)
    await server.start()
    config = tmp / "kubeconfig"
    config.write_text(json.dumps(server.kubeconfig()))
    try:
        yield server, config
    finally:
        await server.stop()


async def event_to_routable(tmp: Path, trials: int) -> tuple[list[float], list[float]]:
    gone: list[float] = []
    back: list[float] = []
    async with api_server(tmp) as (server, config), fn_pods() as port:
        ips = IPS
        for i, ip in enumerate(ips):
            server.put(pod(f"fn-{i}", ip))
        settings: dict[str, Any] = {
            "db": "k8s",
            "kubeconfig": str(config),
            "label_selector": "app=fn",
            "target_port": port,
            "hc_interval": 30.0,
        }
        async with peers(3, **settings) as bs:
            node = f"{ips[0]}:{port}"

            def everywhere(present: bool) -> Callable[[], bool]:
                return lambda: all((node in b.peer.view.routable) == present for b in bs)

            await until(everywhere(True))
            for _ in range(trials):
                server.put(pod("fn-0", ips[0], ready=False))
                gone.append(await until(everywhere(False)) * 1000)
                server.put(pod("fn-0", ips[0]))
                back.append(await until(everywhere(True)) * 1000)
    return gone, back


async def relist_and_reconnect(tmp: Path, trials: int) -> tuple[float, float, list[float]]:
    async with api_server(tmp) as (server, config):
        for i in range(1000):
            server.put(pod(f"other-{i}", f"127.3.{i // 250}.{i % 250 + 1}", labels={"app": "x"}))
        server.scale(1000)
        watcher = PodWatcher(from_kubeconfig(str(config)), "app=fn", 8080, lambda c: None)
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        await watcher.start()
        try:
            await until(lambda: len(watcher.watch.nodes) == 1000)
            first = (loop.time() - t0) * 1000
            await until(lambda: server.watch_count == 1)
            # A stream that breaks before it lived QUICK_END_S with no event is backed off
            # (a server closing every stream must not be hammered): let this one live.
            await asyncio.sleep(QUICK_END_S + 0.1)
            lists = watcher.watch.counters.get("lists", 0)
            server.drop_watches()
            server.put(pod("moved-on", "127.3.9.9", labels={"app": "x"}))
            server.compact()  # the watcher's RV is now older than the history: 410
            relist = await until(lambda: watcher.watch.counters.get("lists", 0) > lists) * 1000
            reconnect: list[float] = []
            await until(lambda: server.watch_count == 1)
            await asyncio.sleep(QUICK_END_S + 0.1)
            for i in range(trials):
                await until(lambda: server.watch_count == 1)
                server.drop_watches()
                ip = f"127.4.{i // 250}.{i % 250 + 1}"
                server.put(pod(f"new-{i}", ip))
                reconnect.append(await until(has_node(watcher, f"{ip}:8080")) * 1000)
        finally:
            await watcher.stop()
    return first, relist, reconnect


def has_node(watcher: PodWatcher, node: str) -> Callable[[], bool]:
    return lambda: node in watcher.watch.nodes


def vm_rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


async def fnlb_rss(tmp: Path, pods: int) -> int:
    async with api_server(tmp) as (server, config):
        for i in range(pods):
            server.put(pod(f"fn-{i}", f"127.5.{i // 250}.{i % 250 + 1}"))
        mgmt = free_port()
        argv = [
            sys.executable, "-m", "fnlb", "serve", "-db=k8s", f"-kubeconfig={config}",
            "-label-selector=app=fn", "-listen=127.0.0.1:0", f"-mgmt-listen=127.0.0.1:{mgmt}",
            "-hc-interval=30", "-log-level=warning",
        ]  # fmt: skip
        proc = subprocess.Popen(  # noqa: ASYNC220 - starting it does not block for long
            argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        try:
            want = "ready" if pods else "no Fn nodes known"
            async with aiohttp.ClientSession() as s:
                deadline = time.monotonic() + 30
                while time.monotonic() < deadline:
                    with contextlib.suppress(aiohttp.ClientError):
                        async with s.get(f"http://127.0.0.1:{mgmt}/readyz") as r:
                            if want in await r.text():
                                break
                    await asyncio.sleep(0.1)
                else:
                    raise TimeoutError("fnlb never got the pod list")
            await asyncio.sleep(1.0)  # let the first round of health checks finish
            return vm_rss_kib(proc.pid)
        finally:
            proc.terminate()
            proc.wait(10)


async def run(trials: int) -> None:
    with tempfile.TemporaryDirectory(prefix="fnlb-k8s-bench-") as name:
        tmp = Path(name)
        gone, back = await event_to_routable(tmp, trials)
        first, relist, reconnect = await relist_and_reconnect(tmp, trials)
        rss0 = await fnlb_rss(tmp, 0)
        rss1000 = await fnlb_rss(tmp, 1000)
    print(f"cores: {os.cpu_count()}, load average: {os.getloadavg()[0]:.1f}\n")
    print("| figure | n | p50 | p99 | max | unit |")
    print("|---|---|---|---|---|---|")
    print(row("pod turns unready -> gone from all 3 peers' routable sets", gone))
    print(row("pod turns ready -> routable on all 3 peers", back))
    print(row("watch cut -> next event applied (re-watch from RV)", reconnect))
    print(f"| first list of 1,000 pods (+1,000 unrelated), 2 pages | 1 | {first:.1f} | | | ms |")
    print(f"| relist of 1,000 pods after 410 | 1 | {relist:.1f} | | | ms |")
    print(f"| fnlb RSS, 0 pods | 1 | {rss0 / 1024:.1f} | | | MiB |")
    print(f"| fnlb RSS, 1,000 ready pods | 1 | {rss1000 / 1024:.1f} | | | MiB |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trials", type=int, default=50)
    args = parser.parse_args(argv)
    asyncio.run(run(max(1, min(args.trials, 1000))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
