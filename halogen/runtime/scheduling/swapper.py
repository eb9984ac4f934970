"""Which models run, as effects: the Swapper carries out the planner's decisions (`planner.py`):
it queues requests, starts and stops processes and hands requests the model they asked for.

It is llama-swap's baseRouter (internal/router/base.go) with its scheduler. It keeps the name
Swapper because in a llama-swap config "router" (`routing.router`) names the eviction policy,
which lives in `eviction.py`."""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from halogen.llamaswap.resolved import Resolved, Runnable
from halogen.runtime.base.errors import Overloaded, Refusal, ShuttingDown, StartFailed, UnknownModel
from halogen.runtime.base.logs import Logs
from halogen.runtime.base.metrics import Metrics
from halogen.runtime.process import model_files
from halogen.runtime.process.upstream import State, Upstream
from halogen.runtime.scheduling.eviction import Eviction, eviction_for
from halogen.runtime.scheduling.planner import ModelView, Refuse, Serve, Snapshot, Start, Wait, plan

# How a model's process is made: (runnable, health check timeout, logs, called when it exits).
UpstreamFactory = Callable[[Runnable, float, Logs, Callable[[Upstream], None]], Upstream]


def spawn_upstream(
    runnable: Runnable, health_check_timeout: float, logs: Logs, on_exit: Callable[[Upstream], None]
) -> Upstream:
    return Upstream(runnable, health_check_timeout=health_check_timeout, logs=logs, on_exit=on_exit)


@dataclass(eq=False)
class Slot:
    """A model as the Swapper sees it: its process, and the requests that count on it."""

    upstream: Upstream
    # Requests holding the model: in flight, or waiting on the start they share. A model with
    # holders is never stopped to make room.
    holders: int = 0
    start: asyncio.Task[None] | None = None
    stop: asyncio.Task[None] | None = None
    # Set by an unload while requests are in flight: no new request takes the model, and it
    # stops as soon as the last one is done.
    draining: bool = False
    idle_timer: asyncio.TimerHandle | None = None
    expires_at: float | None = None  # wall clock, while an idle ttl timer runs
    # The last request's own idle time (Ollama's keep_alive), in seconds, until the model stops;
    # None: the config's ttl.
    keep_alive: float | None = None
    rule: str = ""  # the router rule (group, matrix set) that admitted the running process
    evicting: tuple[str, ...] = ()  # the models its current start stops first

    @property
    def runnable(self) -> Runnable:
        return self.upstream.runnable

    @property
    def ttl(self) -> float:
        """Seconds an idle model stays up: `math.inf` for ever, 0 not at all."""
        if self.keep_alive is not None:
            return self.keep_alive
        return float(self.runnable.ttl) if self.runnable.ttl > 0 else math.inf

    @property
    def phase(self) -> State:
        if self.stop is not None and not self.stop.done():
            return State.STOPPING
        if self.start is not None and not self.start.done():
            return State.STARTING
        return self.upstream.state

    @property
    def busy(self) -> bool:
        return self.holders > 0 or self.phase is State.STARTING


@dataclass(frozen=True)
class Running:
    """One row of `/running`."""

    model: str
    state: State
    cmd: str
    proxy: str
    ttl: int
    expires_at: float | None
    rule: str


@dataclass(eq=False)
class _Waiter:
    """A request that holds no model yet, in the queue until the planner lets it through."""

    model_id: str
    priority: int
    granted: asyncio.Future[Slot]
    task: asyncio.Task[Any] | None = None  # the request's own, for its place in the queue


class Swapper:
    """Starts, shares and stops models for the requests that need them.

    `acquire(model_id)` is the only way a request reaches an upstream. A request the planner
    cannot serve at once waits in one queue, in priority order (`Resolved.priority`, higher
    first) and arrival order within a priority, as llama-swap's FIFO scheduler queues
    (internal/router/scheduler/fifo.go `enqueue`); whenever anything changes (a request ends,
    a start or stop finishes, a process exits, a reload) the queue is walked in that order
    and every request asked again (`drainQueue`).
    """

    def __init__(
        self,
        resolved: Resolved,
        *,
        logs: Logs | None = None,
        metrics: Metrics | None = None,
        health_check_timeout: float | None = None,
        upstream_factory: UpstreamFactory = spawn_upstream,
    ) -> None:
        self.resolved = resolved
        self.eviction: Eviction = eviction_for(resolved)
        self.logs = logs or Logs(echo_proxy=False)
        self.metrics = metrics or Metrics(resolved.models)
        self._factory = upstream_factory
        # Overrides the config's healthCheckTimeout, across reloads (tests and the CLI set it).
        self._health_check_override = health_check_timeout
        self._slots = {mid: self._slot(r) for mid, r in resolved.models.items()}
        # Slots of models a reload removed or changed, until their process has stopped.
        self._retiring: set[Slot] = set()
        self._queue: list[_Waiter] = []
        self._queued: Counter[str] = Counter()
        self._views = _Views(self._slots, self._queued)
        self._snap: Snapshot | None = None
        self._waits: dict[str, str] = {}  # the reason last logged for a model's waiting requests
        self._changed = asyncio.Event()
        self._walking = False
        self._walk_again = False
        self._closing = False
        self._refusing = False  # draining for shutdown: only requests that hold a model go on
        self._background: set[asyncio.Task[None]] = set()
        # The active profile (llama-swap's /api/profiles/active): none at start or after a reload.
        self._profile = ""
        # Called after each change a model's phase or the profile may show in (llama-swap's
        # ProcessStateChangeEvent): the UI's event stream compares and publishes.
        self.watchers: list[Callable[[], None]] = []

    @property
    def health_check_timeout(self) -> float:
        """Seconds a starting model gets to become ready: the override, else the config's."""
        if self._health_check_override is not None:
            return self._health_check_override
        return float(self.resolved.health_check_timeout)

    def _slot(self, runnable: Runnable) -> Slot:
        return Slot(self._factory(runnable, self.health_check_timeout, self.logs, lambda _: self._notify()))

    def priority(self, model_id: str) -> int:
        """The model's place in the queue: higher first (routing.scheduler fifo priority)."""
        return self.resolved.priority.get(model_id, 0)

    # --- what runs ----------------------------------------------------------------------

    def upstream(self, model_id: str) -> Upstream:
        return self._slots[model_id].upstream

    def slot(self, model_id: str) -> Slot:
        return self._slots[model_id]

    def _all_slots(self) -> Iterator[tuple[str, Slot]]:
        """Every slot with a process or a chance of one: the config's, then the retiring ones
        (a reload replaced them; they serve their last requests until they stop)."""
        yield from self._slots.items()
        for slot in self._retiring:
            yield slot.runnable.id, slot

    def running(self) -> list[Running]:
        """The rows of /running, by model id; a process a reload replaced is listed until it
        has stopped, beside its successor."""
        rows = []
        for mid, slot in sorted(self._all_slots(), key=lambda item: (item[0], item[1] in self._retiring)):
            phase = slot.phase
            if phase is State.STOPPED:
                continue
            rows.append(
                Running(
                    model=mid,
                    state=phase,
                    cmd=slot.upstream.command(),
                    proxy=slot.runnable.proxy,
                    ttl=_whole_seconds(slot.ttl),
                    expires_at=self._expiry(slot),
                    rule=slot.rule,
                )
            )
        return rows

    def active(self) -> set[str]:
        """The models whose process (the current one, or one a reload replaced) is starting,
        ready or stopping."""
        return {mid for mid, slot in self._all_slots() if slot.phase is not State.STOPPED}

    def in_flight(self) -> dict[str, int]:
        """Requests holding or waiting for each model."""
        counts = {mid: slot.holders + self._queued[mid] for mid, slot in self._slots.items()}
        for slot in self._retiring:
            counts[slot.runnable.id] = counts.get(slot.runnable.id, 0) + slot.holders
        return counts

    def queued(self) -> dict[str, int]:
        """Requests waiting in the queue for each model."""
        return {mid: self._queued[mid] for mid in self._slots}

    def waiting(self) -> list[tuple[int, str, int]]:
        """The queue as it stands: (position from 1, model id, priority) of each waiting
        request, numbered as `queue_position` numbers them (the web UI's Memory page)."""
        return [(at, w.model_id, w.priority) for at, w in enumerate(self._queue, 1)]

    def queue_position(self, task: asyncio.Task[Any] | None) -> int | None:
        """Where the request running as `task` waits in the queue, from 1 (all models' requests
        counted, as llama-swap's broadcastQueuePositions numbers them); None when it waits in
        none."""
        for at, waiter in enumerate(self._queue, 1):
            if waiter.task is task:
                return at
        return None

    def position_reader(self) -> Callable[[], int | None]:
        """`queue_position` of the request running now, read whenever it is called (from the
        task that streams its loading progress)."""
        task = asyncio.current_task()
        return lambda: self.queue_position(task)

    def _expiry(self, slot: Slot) -> float | None:
        if math.isinf(slot.ttl):
            return None
        if slot.expires_at is not None:
            return slot.expires_at
        return time.time() + slot.ttl

    # --- requests -----------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def acquire(self, model_id: str, keep_alive: float | None = None) -> AsyncIterator[Upstream]:
        """Hold `model_id` ready for the duration of the block. `keep_alive` (seconds, `math.inf`
        for ever) replaces the config's ttl until the model stops; a request that gives none
        goes back to the config's, as each Ollama request sets its own."""
        if model_id in self._slots:  # a missing file is a 503 before anything starts or stops
            model_files.require(self._slots[model_id].runnable)
        slot = await self._claim(model_id)
        slot.keep_alive = keep_alive
        try:
            yield slot.upstream
        finally:
            self._release(slot)

    async def ensure(self, model_id: str, keep_alive: float | None = None) -> None:
        """Start `model_id` (making room as a request would) without holding it."""
        async with self.acquire(model_id, keep_alive):
            pass

    async def _claim(self, model_id: str) -> Slot:
        while True:
            slot = await self._granted(model_id)
            if slot.start is None or slot.start.done():
                if slot.upstream.state is State.READY:
                    return slot
            else:
                try:
                    await asyncio.shield(slot.start)
                except asyncio.CancelledError:
                    self._release(slot)
                    task = asyncio.current_task()
                    if self._closing and task is not None and not task.cancelling():
                        # The start was cancelled by shutdown, not this request.
                        raise ShuttingDown("halogen is shutting down") from None
                    raise
                except BaseException:
                    self._release(slot)
                    raise
                if slot.upstream.state is State.READY:
                    return slot
            # It died between ready and now: wait in line again.
            self._release(slot)

    async def _granted(self, model_id: str) -> Slot:
        """Ask the planner for `model_id` now; queue the request when it must wait. The slot
        returned is held (counted in its holders) and ready or starting; the time it took is
        the request's queue wait (0 when it was let through at once)."""
        began = time.monotonic()
        slot = await self._grant(model_id)
        self.metrics.queue_wait(model_id, time.monotonic() - began)
        return slot

    async def _grant(self, model_id: str) -> Slot:
        priority = self.priority(model_id)
        ahead = [w.model_id for w in self._queue if w.priority >= priority]
        decision = plan(model_id, self._snapshot(), self.eviction, ahead, arriving=True)
        if not isinstance(decision, Wait):
            return self._carry_out(model_id, decision)
        waiter = _Waiter(
            model_id, priority, asyncio.get_running_loop().create_future(), asyncio.current_task()
        )
        # Before the first request of a lower priority: arrival order within a priority.
        at = next((i for i, w in enumerate(self._queue) if w.priority < priority), len(self._queue))
        self._queue.insert(at, waiter)
        self._queued[model_id] += 1
        self._say_why(model_id, decision.reason)
        try:
            return await waiter.granted
        except asyncio.CancelledError:
            granted = waiter.granted
            if granted.done() and not granted.cancelled() and granted.exception() is None:
                self._release(granted.result())  # served just as the client went away
            else:
                self._dequeue(waiter)
                self._notify()  # a request that held others back is gone
            raise

    def _snapshot(self) -> Snapshot:
        # The views read the slots when asked, so one snapshot serves until the slots, the
        # shutdown flags or the retiring processes (copied as values) change.
        refusing = self._closing or self._refusing
        snapshot = self._snap
        if (
            self._retiring
            or snapshot is None
            or snapshot.refusing != refusing
            or snapshot.models is not self._views
        ):
            self._views = _Views(self._slots, self._queued)
            retiring = tuple(_view(slot, 0) for slot in self._retiring)
            snapshot = self._snap = Snapshot(self._views, retiring, refusing)
        return snapshot

    def _carry_out(self, model_id: str, decision: Serve | Start | Refuse) -> Slot:
        """Make a decision happen; the slot held, or the refusal raised."""
        if isinstance(decision, Refuse):
            raise _refusal(model_id, decision)
        slot = self._slots[model_id]
        if isinstance(decision, Start):
            self._begin_start(slot, decision)
        self._waits.pop(model_id, None)
        self._hold(slot)
        return slot

    def _walk(self) -> None:
        """Ask the planner again for every queued request, in queue order (llama-swap's
        `drainQueue`): those it lets through are handed their model, the others keep their
        place. Re-entrant calls (a decision's effects notify) walk again after this one."""
        if self._walking:
            self._walk_again = True
            return
        self._walking = True
        try:
            again = True
            while again:
                self._walk_again = False
                self._walk_once()
                again = self._walk_again
        finally:
            self._walking = False

    def _walk_once(self) -> None:
        if not self._queue:
            return
        snapshot = self._snapshot()
        ahead: list[str] = []
        for waiter in list(self._queue):
            if waiter.granted.done():
                continue
            decision = plan(waiter.model_id, snapshot, self.eviction, ahead)
            if isinstance(decision, Wait):
                ahead.append(waiter.model_id)
                self._say_why(waiter.model_id, decision.reason)
                continue
            self._dequeue(waiter)
            try:
                slot = self._carry_out(waiter.model_id, decision)
            except Refusal as exc:
                waiter.granted.set_exception(exc)
            else:
                waiter.granted.set_result(slot)
            if isinstance(decision, Start):
                snapshot = self._snapshot()  # the retiring processes are now stopping

    def _dequeue(self, waiter: _Waiter) -> None:
        with contextlib.suppress(ValueError):
            self._queue.remove(waiter)
            self._queued[waiter.model_id] -= 1
            if not self._queued[waiter.model_id]:
                del self._queued[waiter.model_id]

    def _say_why(self, model_id: str, reason: str) -> None:
        """Log why requests for a model wait, once each time the reason changes."""
        if self._waits.get(model_id) != reason:
            self._waits[model_id] = reason
            self.logs.proxy(f"requests for {model_id!r} wait: {reason}")

    def _begin_start(self, slot: Slot, decision: Start) -> None:
        """Stop the models the router evicts (and any retiring process, which may hold the
        port), then start `slot`: llama-swap starts the new model only after the evicted ones
        have stopped."""
        mid = slot.runnable.id
        victims = [self._slots[v] for v in decision.evict]
        victims += self._retiring
        slot.draining = False
        slot.rule = decision.rule
        slot.evicting = decision.evict
        stops = [self._begin_stop(victim, "make room for " + repr(mid)) for victim in victims]
        slot.start = asyncio.create_task(self._start(slot, stops))
        slot.start.add_done_callback(lambda _: self._started(slot))
        self._watched()

    async def _start(self, slot: Slot, stops: Iterable[asyncio.Task[None]]) -> None:
        await asyncio.gather(*(asyncio.shield(s) for s in stops))
        began = time.monotonic()
        await slot.upstream.start()
        self.metrics.swap(slot.runnable.id, time.monotonic() - began)

    def _started(self, slot: Slot) -> None:
        # A done callback: the planner sees the start as over only once its task is done.
        _retrieve_task(slot.start)
        if slot.holders == 0:
            self._idle(slot)
        self._notify()

    def _hold(self, slot: Slot) -> None:
        slot.holders += 1
        self._disarm_ttl(slot)

    def _release(self, slot: Slot) -> None:
        slot.holders -= 1
        if slot.holders == 0:
            self._idle(slot)
        self._notify()

    def _idle(self, slot: Slot) -> None:
        if slot.draining and slot.phase is State.READY:
            self._begin_stop(slot, "unload" if slot not in self._retiring else "config reloaded")
        else:
            self._arm_ttl(slot)

    def _notify(self) -> None:
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()
        self._walk()
        self._watched()

    @property
    def profile(self) -> str:
        return self._profile

    @profile.setter
    def profile(self, name: str) -> None:
        self._profile = name
        self._watched()

    def _watched(self) -> None:
        for watcher in self.watchers:
            watcher()

    # --- stopping -----------------------------------------------------------------------

    def _begin_stop(self, slot: Slot, why: str) -> asyncio.Task[None]:
        if slot.stop is not None and not slot.stop.done():
            return slot.stop
        self._disarm_ttl(slot)
        self.logs.proxy(f"stopping model {slot.runnable.id!r} ({why})")
        slot.stop = asyncio.create_task(slot.upstream.stop())
        slot.stop.add_done_callback(lambda _: self._stopped(slot))
        self._watched()
        return slot.stop

    def _stopped(self, slot: Slot) -> None:
        # A done callback: the planner sees the stop as over only once its task is done.
        _retrieve_task(slot.stop)
        slot.draining = False
        slot.keep_alive = None
        self._retiring.discard(slot)
        self._notify()

    def _arm_ttl(self, slot: Slot) -> None:
        self._disarm_ttl(slot)
        ttl = slot.ttl
        if math.isinf(ttl) or slot.phase is not State.READY:
            return
        if ttl == 0:
            self._begin_stop(slot, "keep_alive 0")
            return
        loop = asyncio.get_running_loop()
        slot.idle_timer = loop.call_later(ttl, self._expire, slot)
        slot.expires_at = time.time() + ttl

    def _disarm_ttl(self, slot: Slot) -> None:
        if slot.idle_timer is not None:
            slot.idle_timer.cancel()
        slot.idle_timer = None
        slot.expires_at = None

    def _expire(self, slot: Slot) -> None:
        slot.idle_timer = None
        slot.expires_at = None
        if slot.holders == 0 and slot.phase is State.READY:
            self._begin_stop(slot, f"idle for {slot.ttl:g} s")

    async def unload(self, model_id: str) -> None:
        """Stop `model_id`: at once when idle, else as soon as its requests are done (new
        requests wait for the stop, then start it again)."""
        slot = self._slots[model_id]
        if slot.phase is State.STARTING and slot.start is not None:
            with contextlib.suppress(StartFailed):
                await asyncio.shield(slot.start)
        if slot.phase is State.READY:
            if slot.holders > 0:
                slot.draining = True
                self._notify()
                while slot.phase is State.READY:
                    await self._changed.wait()
            else:
                self._begin_stop(slot, "unload")
        if slot.stop is not None:
            await asyncio.shield(slot.stop)

    async def unload_all(self) -> None:
        await asyncio.gather(*(self.unload(mid) for mid in sorted(self._slots)))

    def reload(self, resolved: Resolved) -> set[str]:
        """Adopt a new config. A model whose command (argv, env, proxy, check, stop) is the same
        keeps its process and takes the new settings; any other running model is stopped once
        its requests are done. Returns the ids of the running models that will stop."""
        self.resolved = resolved  # first: new slots take its settings
        self.eviction = eviction_for(resolved)
        self.profile = ""
        slots: dict[str, Slot] = {}
        for mid, runnable in resolved.models.items():
            slot = self._slots.get(mid)
            if slot is not None and same_command(slot.runnable, runnable):
                slot.upstream.runnable = runnable
                slot.upstream.health_check_timeout = self.health_check_timeout  # from its next start
                slots[mid] = slot
            else:
                slots[mid] = self._slot(runnable)
        retired = [slot for mid, slot in self._slots.items() if slots.get(mid) is not slot]
        self._slots = slots
        self._snap = None
        stopping = set()
        for slot in retired:
            if slot.phase is State.STOPPED:
                continue
            stopping.add(slot.runnable.id)
            self._retiring.add(slot)
            slot.draining = True
            self._disarm_ttl(slot)
            if slot.holders == 0 and slot.phase is State.READY:
                self._begin_stop(slot, "config reloaded")
        for slot in slots.values():
            if slot.holders == 0:
                self._arm_ttl(slot)  # a changed ttl applies from now
        self._notify()
        return stopping

    # --- lifetime -----------------------------------------------------------------------

    def preload(self, model_ids: Iterable[str]) -> asyncio.Task[None]:
        """Start models in the background, one after the other, as if each was requested."""

        async def run(ids: list[str]) -> None:
            for mid in ids:
                try:
                    await self.ensure(mid)
                except (StartFailed, ShuttingDown, Overloaded) as exc:
                    self.logs.proxy(f"preload of {mid!r} failed: {exc.message}", "error")

        task = asyncio.create_task(run(list(model_ids)))
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task

    def in_flight_total(self) -> int:
        """Requests that hold a model: in flight, or waiting on a start they share."""
        return sum(slot.holders for slot in (*self._slots.values(), *self._retiring))

    async def drain(self, seconds: float, cut: asyncio.Event | None = None) -> bool:
        """Refuse every request that does not hold a model yet (`ShuttingDown`), and wait until
        those that do are done, for at most `seconds` or until `cut` is set. Whether they all
        finished."""
        self._refusing = True
        self._notify()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        while self.in_flight_total():
            changed = self._changed
            waits = [asyncio.ensure_future(changed.wait())]
            if cut is not None:
                waits.append(asyncio.ensure_future(cut.wait()))
            try:
                await asyncio.wait(waits, timeout=deadline - loop.time(), return_when=asyncio.FIRST_COMPLETED)
            finally:
                for wait in waits:
                    wait.cancel()
            if loop.time() >= deadline or (cut is not None and cut.is_set()):
                return not self.in_flight_total()
        return True

    async def close(self) -> None:
        """Refuse new requests and stop every process, whatever it is doing."""
        self._closing = True
        self._notify()
        for task in list(self._background):
            task.cancel()
        slots = [*self._slots.values(), *self._retiring]
        for slot in slots:
            self._disarm_ttl(slot)
            if slot.start is not None and not slot.start.done():
                slot.start.cancel()
        starts = [s.start for s in slots if s.start is not None]
        await asyncio.gather(*starts, *self._background, return_exceptions=True)
        await asyncio.gather(*(s.upstream.stop() for s in slots))


class _Views(Mapping[str, ModelView]):
    """The models as the planner sees them, read from the slots when it asks (a decision
    usually reads one or two models, so none is copied up front)."""

    def __init__(self, slots: Mapping[str, Slot], queued: Mapping[str, int]) -> None:
        self._slots = slots
        self._queued = queued

    def __getitem__(self, model_id: str) -> ModelView:
        return _view(self._slots[model_id], self._queued.get(model_id, 0))

    def __iter__(self) -> Iterator[str]:
        return iter(self._slots)

    def __len__(self) -> int:
        return len(self._slots)


def _view(slot: Slot, queued: int) -> ModelView:
    return ModelView(
        phase=slot.phase,
        holders=slot.holders,
        queued=queued,
        limit=slot.runnable.concurrency_limit,
        draining=slot.draining,
        evicting=slot.evicting,
    )


def _refusal(model_id: str, decision: Refuse) -> Refusal:
    if decision.why == "unknown":
        return UnknownModel(model_id)
    if decision.why == "overloaded":
        return Overloaded(decision.message)
    return ShuttingDown(decision.message)


def same_command(old: Runnable, new: Runnable) -> bool:
    """Whether `new` would run the same process as `old`."""
    return (old.argv, old.env, old.proxy, old.check_endpoint, old.stop_argv) == (
        new.argv,
        new.env,
        new.proxy,
        new.check_endpoint,
        new.stop_argv,
    )


def _retrieve_task(task: asyncio.Task[None] | None) -> None:
    # The failure reaches the requests that waited on the task; nobody else needs it logged.
    if task is not None and task.done() and not task.cancelled():
        task.exception()


def _whole_seconds(ttl: float) -> int:
    """A ttl as `/running` shows it, llama-swap's way: 0 for never, else whole seconds."""
    return 0 if math.isinf(ttl) else max(1, math.ceil(ttl))
