"""The container pool of one Fn node, as a deterministic state machine in (virtual) time.

Rule 1: no asyncio, socket, time or global random here (an import-linter contract says so).
Rule 2: every input carries `now` (seconds, any monotonic origin); every output is returned
or queued as an event for `next_event()` / `drain_events()`.

The same class serves the aiohttp emulator (`fnlb.fnsim.server`, which feeds `loop.time()`
and keeps one timer armed at `next_timer()`) and pure simulations that drive hundreds of
modelled nodes from one virtual clock.

Theory of operation (the agent of an Fn server, simplified to what a load balancer sees):

- The node has `memory_mb` of memory. A container runs one function, holds that function's
  memory from launch until it is destroyed (idle too), and runs one call at a time.
- A call goes to an idle container of its function at once (a *hot* call). Otherwise it
  waits in its function's FIFO queue, and a container is launched whenever the calls waiting
  for a function exceed its idle + starting containers, as Fn does. A launch needs memory:
  when the free memory is short, other functions' IDLE containers are evicted, least
  recently used first (only if that frees enough; busy and starting ones are never touched).
  A function that cannot launch for lack of memory is "starved": it is retried, in the order
  functions starved, whenever a container goes idle or is destroyed.
- A launched container is ready `cold_start_s` later. Calls are not bound to the container
  launched for them: whichever container of the function becomes free first (a fresh one
  or a hot one finishing a call) takes the call at the head of the queue, as in Fn.
- **Cold** is defined per call: a call is cold when it ran in a container whose start it
  was waiting on, i.e. it was queued when that container finished starting and was the
  first call that container ran. Every other call is hot, including one that waited in the
  queue and was served by a container that finished another call. `cold_starts` counts
  container launches; `cold_calls` counts cold calls (fewer when a launched container is
  not needed by the time it is ready and goes idle instead).
- A container idle for `idle_timeout_s` is destroyed. A call that waits `max_wait_s`
  without a container is rejected (`CallRejected(reason="busy")`: the server answers 503).
- A waiting call can be withdrawn with `cancel()` (its client went away). A running call
  cannot: the function runs to the end, as a container cannot be interrupted mid-call.

Time costs: `submit`, `cancel` and each timer step are O(log running calls) plus the
eviction scan when memory is full (O(idle containers)). Timers of the same kind share one
duration, so three of the four timer queues are plain FIFOs; only executions need a heap.
"""

from __future__ import annotations

import heapq
from collections import OrderedDict, deque
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Final, Literal, Protocol

from fnlb.errors import LocalProtocolError

_INF: Final = float("inf")

# Call states.
_WAITING: Final = 0
_RUNNING: Final = 1
_DONE: Final = 2

# Container states.
_STARTING: Final = 0
_IDLE: Final = 1
_BUSY: Final = 2


class UniformSource(Protocol):
    """What the model needs from a random generator (`random.Random` fits): U[0, 1)."""

    def random(self) -> float: ...


@dataclass(frozen=True, slots=True)
class PoolConfig:
    """The knobs of one node's container pool. Units in the names; defaults as Fn's."""

    memory_mb: int = 1024
    """Memory of the node for containers, MB. 1024 / 128 = 8 containers at once."""
    fn_memory_mb: int = 128
    """Memory each container holds, MB, unless `submit(memory_mb=...)` says otherwise."""
    cold_start_s: float = 0.3
    """Seconds from launching a container to it being ready for its first call."""
    idle_timeout_s: float = 30.0
    """Seconds an idle container lives unused before it is destroyed."""
    max_wait_s: float = 15.0
    """Seconds a call may wait for a container before it is rejected busy (503)."""
    jitter: float = 0.0
    """Execution time is drawn uniformly from exec_s * (1 +/- jitter); 0 <= jitter <= 1."""

    def check(self) -> None:
        """Raise ValueError naming the knob when the configuration cannot work."""
        if self.memory_mb <= 0:
            raise ValueError("memory_mb must be greater than 0")
        if not 0 < self.fn_memory_mb <= self.memory_mb:
            raise ValueError("fn_memory_mb must be greater than 0 and at most memory_mb")
        for name in ("cold_start_s", "idle_timeout_s", "max_wait_s"):
            value = getattr(self, name)
            if not 0 <= value < _INF:
                raise ValueError(f"{name} must be a finite number >= 0")
        if not 0 <= self.jitter <= 1:
            raise ValueError("jitter must be between 0 and 1")


@dataclass(frozen=True, slots=True)
class CallStarted:
    """A call got a container at `at` after waiting `waited_s`; `cold` as defined above."""

    call_id: Hashable
    fn: str
    at: float
    cold: bool
    waited_s: float


@dataclass(frozen=True, slots=True)
class CallFinished:
    """A call's execution ended at `at`; it had waited `waited_s` and ran `ran_s`."""

    call_id: Hashable
    fn: str
    at: float
    cold: bool
    waited_s: float
    ran_s: float


@dataclass(frozen=True, slots=True)
class CallRejected:
    """A call will not run: `busy` (waited max_wait_s) or `too_big` (memory > node's)."""

    call_id: Hashable
    fn: str
    at: float
    reason: Literal["busy", "too_big"]
    waited_s: float


Event = CallStarted | CallFinished | CallRejected


@dataclass(frozen=True, slots=True)
class PoolStats:
    """A snapshot of the counters and gauges an emulated server publishes."""

    calls: int
    """Calls submitted (counter)."""
    queued: int
    """Calls waiting for a container now (gauge)."""
    running: int
    """Calls executing now (gauge) = busy containers."""
    completed: int
    """Calls that finished executing (counter)."""
    server_busy: int
    """Calls rejected after waiting max_wait_s (counter; the server's 503s)."""
    too_big: int
    """Calls rejected because the function needs more memory than the node has (counter)."""
    cancelled: int
    """Waiting calls withdrawn by `cancel()` (counter)."""
    cold_starts: int
    """Containers launched (counter)."""
    cold_calls: int
    """Calls that ran in a container whose start they waited on (counter)."""
    hot_calls: int
    """Calls that started in an already running container (counter)."""
    evictions: int
    """Idle containers destroyed to make room for another function (counter)."""
    idle_expiries: int
    """Idle containers destroyed after idle_timeout_s (counter)."""
    mem_used_mb: int
    """Memory held by containers, MB (gauge)."""
    mem_avail_mb: int
    """memory_mb - mem_used_mb (gauge)."""
    containers_idle: int
    containers_busy: int
    containers_starting: int


class _Call:
    __slots__ = ("cold", "deadline", "exec_s", "fn", "id", "started", "state", "submitted")

    def __init__(self, call_id: Hashable, fn: _Function, exec_s: float, now: float, wait: float):
        self.id = call_id
        self.fn = fn
        self.exec_s = exec_s
        self.submitted = now
        self.deadline = now + wait
        self.state = _WAITING
        self.started = 0.0
        self.cold = False


class _Container:
    __slots__ = ("call", "fn", "id", "idle_since", "memory", "ready_at", "state")

    def __init__(self, cid: int, fn: _Function, memory: int, ready_at: float) -> None:
        self.id = cid
        self.fn = fn
        self.memory = memory
        self.ready_at = ready_at
        self.state = _STARTING
        self.idle_since = 0.0
        self.call: _Call | None = None


class _Function:
    __slots__ = ("idle", "memory", "name", "queue", "starting", "waiting")

    def __init__(self, name: str, memory: int) -> None:
        self.name = name
        self.memory = memory
        self.queue: deque[_Call] = deque()  # FIFO; holds stale (no longer waiting) calls too
        self.waiting = 0  # calls in `queue` still waiting
        self.idle: list[_Container] = []  # most recently idle last: reused first
        self.starting = 0


class PoolModel:
    """One Fn node's containers and calls. Drive it with `submit`, `cancel`, `handle_timer`.

    After each input, read events with `next_event()` or `drain_events()` and call
    `handle_timer(t)` no later than `next_timer()` (calling it early is harmless).
    Timer work due at the same instant runs finishes first, then container starts, then
    wait deadlines, then idle expiries: a container freed exactly at a call's deadline
    serves it.
    """

    def __init__(self, config: PoolConfig | None = None, rng: UniformSource | None = None):
        self.config = config if config is not None else PoolConfig()
        self.config.check()
        if self.config.jitter > 0 and rng is None:
            raise LocalProtocolError("PoolModel: jitter > 0 needs an rng")
        self._rng = rng
        self._capacity = self.config.memory_mb
        self._functions: dict[str, _Function] = {}
        self._calls: dict[Hashable, _Call] = {}  # waiting and running calls
        self._waiting_order: deque[_Call] = deque()  # submit order = deadline order; stale too
        self._starting: deque[_Container] = deque()  # launch order = ready order
        self._idle_lru: OrderedDict[int, _Container] = OrderedDict()  # idle order = expiry order
        self._running: list[tuple[float, int, _Container]] = []  # heap by finish time
        self._starved: OrderedDict[str, _Function] = OrderedDict()
        self._events: deque[Event] = deque()
        self._seq = 0
        self.mem_used_mb = 0
        self._idle_mem = 0
        self.calls = 0
        self.queued = 0
        self.running = 0
        self.completed = 0
        self.server_busy = 0
        self.too_big = 0
        self.cancelled = 0
        self.cold_starts = 0
        self.cold_calls = 0
        self.hot_calls = 0
        self.evictions = 0
        self.idle_expiries = 0

    # ---- inputs -------------------------------------------------------------------------

    def submit(
        self,
        call_id: Hashable,
        fn: str,
        exec_s: float,
        now: float,
        memory_mb: int | None = None,
    ) -> None:
        """A call to `fn` arrives at `now` and will execute `exec_s` seconds (before jitter).

        `memory_mb` overrides the function's container size for containers launched from
        now on. Emits CallStarted at once when a hot container is idle, CallRejected when
        the function can never fit; otherwise the call waits. Timer work due by `now` runs
        first, so a driver need not call `handle_timer(now)` before.
        """
        self.handle_timer(now)
        if call_id in self._calls:
            raise LocalProtocolError(f"PoolModel.submit: call id {call_id!r} is already in use")
        if not exec_s >= 0:
            raise LocalProtocolError(f"PoolModel.submit: exec_s must be >= 0, not {exec_s!r}")
        memory = self.config.fn_memory_mb if memory_mb is None else memory_mb
        self.calls += 1
        if memory > self._capacity or memory <= 0:
            self.too_big += 1
            self._events.append(CallRejected(call_id, fn, now, "too_big", 0.0))
            return
        f = self._functions.get(fn)
        if f is None:
            f = self._functions[fn] = _Function(fn, memory)
        else:
            f.memory = memory
        jitter = self.config.jitter
        if jitter > 0 and self._rng is not None:
            exec_s *= 1.0 + jitter * (2.0 * self._rng.random() - 1.0)
        call = _Call(call_id, f, exec_s, now, self.config.max_wait_s)
        self._calls[call_id] = call
        if f.idle:
            container = f.idle.pop()
            del self._idle_lru[container.id]
            self._idle_mem -= container.memory
            self._start(call, container, now, cold=False)
            return
        f.queue.append(call)
        f.waiting += 1
        self.queued += 1
        self._waiting_order.append(call)
        self._launch_for(f, now)

    def cancel(self, call_id: Hashable, now: float) -> bool:
        """Withdraw a waiting call (its client left). False if it is not waiting any more."""
        self.handle_timer(now)
        call = self._calls.get(call_id)
        if call is None or call.state != _WAITING:
            return False
        self._unqueue(call)
        self.cancelled += 1
        return True

    def handle_timer(self, now: float) -> None:
        """Run every container start, call finish, wait deadline and idle expiry due by now."""
        running = self._running
        starting = self._starting
        idle_lru = self._idle_lru
        idle_timeout = self.config.idle_timeout_s
        while True:
            t_run = running[0][0] if running else _INF
            t_start = starting[0].ready_at if starting else _INF
            t_wait = self._next_deadline()
            t_idle = next(iter(idle_lru.values())).idle_since + idle_timeout if idle_lru else _INF
            if t_run <= now and t_run <= t_start and t_run <= t_wait and t_run <= t_idle:
                self._finish(heapq.heappop(running)[2], t_run)
            elif t_start <= now and t_start <= t_wait and t_start <= t_idle:
                self._ready(starting.popleft(), t_start)
            elif t_wait <= now and t_wait <= t_idle:
                self._reject_busy(self._waiting_order.popleft(), t_wait)
            elif t_idle <= now:
                self._expire(idle_lru.popitem(last=False)[1], t_idle)
            else:
                return

    # ---- outputs ------------------------------------------------------------------------

    def next_timer(self) -> float | None:
        """When `handle_timer` has work next (absolute seconds), or None when nothing is due."""
        t = self._next_deadline()
        if self._running:
            t = min(t, self._running[0][0])
        if self._starting:
            t = min(t, self._starting[0].ready_at)
        if self._idle_lru:
            t = min(t, next(iter(self._idle_lru.values())).idle_since + self.config.idle_timeout_s)
        return None if t == _INF else t

    def next_event(self) -> Event | None:
        """The oldest event not yet read, or None."""
        return self._events.popleft() if self._events else None

    def drain_events(self) -> list[Event]:
        """Every event not yet read, oldest first."""
        events = list(self._events)
        self._events.clear()
        return events

    def stats(self) -> PoolStats:
        """The counters and gauges, as the server publishes them (memory in MB)."""
        return PoolStats(
            calls=self.calls,
            queued=self.queued,
            running=self.running,
            completed=self.completed,
            server_busy=self.server_busy,
            too_big=self.too_big,
            cancelled=self.cancelled,
            cold_starts=self.cold_starts,
            cold_calls=self.cold_calls,
            hot_calls=self.hot_calls,
            evictions=self.evictions,
            idle_expiries=self.idle_expiries,
            mem_used_mb=self.mem_used_mb,
            mem_avail_mb=self._capacity - self.mem_used_mb,
            containers_idle=len(self._idle_lru),
            containers_busy=self.running,
            containers_starting=len(self._starting),
        )

    def containers_of(self, fn: str) -> tuple[int, int, int]:
        """(idle, busy, starting) containers of one function; for tests and dashboards."""
        f = self._functions.get(fn)
        if f is None:
            return (0, 0, 0)
        busy = sum(1 for _, _, c in self._running if c.fn is f)
        return (len(f.idle), busy, f.starting)

    # ---- transitions --------------------------------------------------------------------

    def _next_deadline(self) -> float:
        order = self._waiting_order
        while order and order[0].state != _WAITING:
            order.popleft()
        return order[0].deadline if order else _INF

    def _start(self, call: _Call, container: _Container, now: float, *, cold: bool) -> None:
        container.state = _BUSY
        container.call = call
        call.state = _RUNNING
        call.started = now
        call.cold = cold
        self.running += 1
        if cold:
            self.cold_calls += 1
        else:
            self.hot_calls += 1
        self._seq += 1
        heapq.heappush(self._running, (now + call.exec_s, self._seq, container))
        self._events.append(CallStarted(call.id, call.fn.name, now, cold, now - call.submitted))

    def _finish(self, container: _Container, now: float) -> None:
        call = container.call
        assert call is not None
        container.call = None
        call.state = _DONE
        del self._calls[call.id]
        self.running -= 1
        self.completed += 1
        self._events.append(
            CallFinished(
                call.id,
                call.fn.name,
                now,
                call.cold,
                call.started - call.submitted,
                now - call.started,
            )
        )
        self._hand_over(container, now, cold=False)

    def _ready(self, container: _Container, now: float) -> None:
        container.fn.starting -= 1
        self._hand_over(container, now, cold=True)

    def _hand_over(self, container: _Container, now: float, *, cold: bool) -> None:
        """A container became free: it takes the oldest waiting call of its function, or idles."""
        f = container.fn
        queue = f.queue
        while f.waiting:
            call = queue.popleft()
            if call.state == _WAITING:
                f.waiting -= 1
                self.queued -= 1
                if not f.waiting:
                    queue.clear()
                self._start(call, container, now, cold=cold)
                return
        queue.clear()
        container.state = _IDLE
        container.idle_since = now
        f.idle.append(container)
        self._idle_lru[container.id] = container
        self._idle_mem += container.memory
        if self._starved:
            self._retry_starved(now)

    def _reject_busy(self, call: _Call, now: float) -> None:
        self._unqueue(call)
        self.server_busy += 1
        self._events.append(CallRejected(call.id, call.fn.name, now, "busy", now - call.submitted))

    def _unqueue(self, call: _Call) -> None:
        call.state = _DONE
        del self._calls[call.id]
        f = call.fn
        f.waiting -= 1
        self.queued -= 1
        if not f.waiting:
            f.queue.clear()

    def _expire(self, container: _Container, now: float) -> None:
        self.idle_expiries += 1
        self._destroy(container)
        if self._starved:
            self._retry_starved(now)

    def _destroy(self, container: _Container) -> None:
        """Remove an idle container already taken out of the LRU; its memory is freed."""
        container.fn.idle.remove(container)
        self._idle_mem -= container.memory
        self.mem_used_mb -= container.memory

    def _launch_for(self, f: _Function, now: float) -> None:
        """Launch containers while the function's waiting calls outnumber its free ones."""
        while f.waiting > len(f.idle) + f.starting:
            if not self._make_room(f):
                self._starved.setdefault(f.name, f)
                return
            self._seq += 1
            container = _Container(self._seq, f, f.memory, now + self.config.cold_start_s)
            f.starting += 1
            self.mem_used_mb += f.memory
            self.cold_starts += 1
            self._starting.append(container)
        self._starved.pop(f.name, None)

    def _make_room(self, f: _Function) -> bool:
        """Free `f.memory` by evicting other functions' idle containers, LRU first, if enough."""
        need = f.memory - (self._capacity - self.mem_used_mb)
        if need <= 0:
            return True
        own_idle = sum(c.memory for c in f.idle)
        if self._idle_mem - own_idle < need:
            return False
        lru = self._idle_lru
        for cid in list(lru):
            if need <= 0:
                break
            container = lru[cid]
            if container.fn is f:
                continue
            del lru[cid]
            self.evictions += 1
            self._destroy(container)
            need -= container.memory
        return True

    def _retry_starved(self, now: float) -> None:
        """Serve starved functions in the order they starved; stop at the first that can't."""
        for f in list(self._starved.values()):
            self._launch_for(f, now)
            if f.name in self._starved:
                return
