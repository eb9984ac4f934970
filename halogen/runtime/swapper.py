"""Which models run: requests claim a model, the Swapper starts it, evicting what the groups say
must make room, without ever stopping a model that is serving a request."""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass

from halogen.llamaswap.resolve import Resolved, Runnable
from halogen.runtime import model_files
from halogen.runtime.errors import Overloaded, ShuttingDown, StartFailed, UnknownModel
from halogen.runtime.logs import Logs
from halogen.runtime.metrics import Metrics
from halogen.runtime.router import Router, router_for
from halogen.runtime.upstream import State, Upstream


@dataclass(eq=False)
class Slot:
    """A model as the Swapper sees it: its process, and the requests that count on it."""

    upstream: Upstream
    # Requests holding the model: in flight, or waiting on the start they share. A model with
    # holders is never stopped to make room.
    holders: int = 0
    # Requests for the model that do not hold it yet: waiting for room (busy models to drain)
    # or for a stop of this model to finish.
    queued: int = 0
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


class Swapper:
    """Starts, shares and stops models for the requests that need them.

    `acquire(model_id)` is the only way a request reaches an upstream:

    - requests for a model that is starting all wait for that one start;
    - a request whose model needs room waits while the models it would evict are busy, and
      requests for those busy models keep being served meanwhile;
    - more than `concurrencyLimit` requests (held or queued) for one model → `Overloaded`;
    - a model idle for `ttl` seconds is stopped.
    """

    def __init__(
        self,
        resolved: Resolved,
        *,
        logs: Logs | None = None,
        metrics: Metrics | None = None,
        health_check_timeout: float | None = None,
    ) -> None:
        self.resolved = resolved
        self.router: Router = router_for(resolved)
        self.logs = logs or Logs(echo_proxy=False)
        self.metrics = metrics or Metrics(resolved.models)
        # Overrides the config's healthCheckTimeout, across reloads (tests and the CLI set it).
        self._health_check_override = health_check_timeout
        self._slots = {mid: self._slot(r) for mid, r in resolved.models.items()}
        # Slots of models a reload removed or changed, until their process has stopped.
        self._retiring: set[Slot] = set()
        self._changed = asyncio.Event()
        self._closing = False
        self._refusing = False  # draining for shutdown: only requests that hold a model go on
        self._background: set[asyncio.Task[None]] = set()

    @property
    def health_check_timeout(self) -> float:
        """Seconds a starting model gets to become ready: the override, else the config's."""
        if self._health_check_override is not None:
            return self._health_check_override
        return float(self.resolved.health_check_timeout)

    def _slot(self, runnable: Runnable) -> Slot:
        upstream = Upstream(
            runnable,
            health_check_timeout=self.health_check_timeout,
            logs=self.logs,
            on_exit=lambda _: self._notify(),
        )
        return Slot(upstream)

    # --- what runs ----------------------------------------------------------------------

    def upstream(self, model_id: str) -> Upstream:
        return self._slots[model_id].upstream

    def slot(self, model_id: str) -> Slot:
        return self._slots[model_id]

    def running(self) -> list[Running]:
        rows = []
        for mid in sorted(self._slots):
            slot = self._slots[mid]
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
                )
            )
        return rows

    def active(self) -> set[str]:
        """The models whose process is starting, ready or stopping."""
        return {mid for mid, slot in self._slots.items() if slot.phase is not State.STOPPED}

    def in_flight(self) -> dict[str, int]:
        """Requests holding or waiting for each model."""
        return {mid: slot.holders + slot.queued for mid, slot in self._slots.items()}

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
            slot = self._slots.get(model_id)
            if slot is None:
                raise UnknownModel(model_id)
            limit = slot.runnable.concurrency_limit
            if slot.holders + slot.queued >= limit:
                raise Overloaded(f"model {model_id!r} is serving its limit of {limit} requests; retry later")
            try:
                return await self._wait_for(slot)
            except _Replaced:
                continue

    async def _wait_for(self, slot: Slot) -> Slot:
        # A request is counted once: queued until it holds the model, then a holder.
        # Every check and the state change it leads to happen with no await in between, so
        # two requests never decide on the same state.
        slot.queued += 1
        queued = True
        try:
            while True:
                if self._closing or self._refusing:
                    raise ShuttingDown("halogen is shutting down")
                if self._slots.get(slot.runnable.id) is not slot:
                    raise _Replaced
                changed = self._changed
                phase = slot.phase
                if phase is State.READY and not slot.draining:
                    slot.queued -= 1
                    queued = False
                    self._hold(slot)
                    return slot
                if phase is State.STARTING:
                    assert slot.start is not None
                    slot.queued -= 1
                    queued = False
                    self._hold(slot)
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
                    slot.queued += 1
                    queued = True
                    continue
                if phase is State.STOPPED and self._make_room_and_start(slot):
                    continue
                await changed.wait()
        finally:
            if queued:
                slot.queued -= 1

    def _make_room_and_start(self, slot: Slot) -> bool:
        """Begin the start of `slot` if every model it evicts is idle; False if it must wait."""
        mid = slot.runnable.id
        victims = [self._slots[v] for v in sorted(self.router.admit(mid, sorted(self.active())).evict)]
        # A process of the previous config may hold the port the new one is about to use.
        victims += self._retiring
        if any(victim.busy for victim in victims):
            return False
        slot.draining = False
        stops = [self._begin_stop(victim, "make room for " + repr(mid)) for victim in victims]
        slot.start = asyncio.create_task(self._start(slot, stops))
        slot.start.add_done_callback(_retrieve)
        return True

    async def _start(self, slot: Slot, stops: Iterable[asyncio.Task[None]]) -> None:
        try:
            await asyncio.gather(*(asyncio.shield(s) for s in stops))
            began = time.monotonic()
            await slot.upstream.start()
            self.metrics.swap(slot.runnable.id, time.monotonic() - began)
        finally:
            self._notify()
        if slot.holders == 0:
            self._idle(slot)

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
            self._begin_stop(slot, "unload")
        else:
            self._arm_ttl(slot)

    def _notify(self) -> None:
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    # --- stopping -----------------------------------------------------------------------

    def _begin_stop(self, slot: Slot, why: str) -> asyncio.Task[None]:
        if slot.stop is not None and not slot.stop.done():
            return slot.stop
        self._disarm_ttl(slot)
        self.logs.proxy(f"stopping model {slot.runnable.id!r} ({why})")
        slot.stop = asyncio.create_task(self._stop(slot))
        slot.stop.add_done_callback(_retrieve)
        return slot.stop

    async def _stop(self, slot: Slot) -> None:
        try:
            await slot.upstream.stop()
        finally:
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
        self.router = router_for(resolved)
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


class _Replaced(Exception):
    """The slot a request waited on was replaced by a config reload."""


def same_command(old: Runnable, new: Runnable) -> bool:
    """Whether `new` would run the same process as `old`."""
    return (old.argv, old.env, old.proxy, old.check_endpoint, old.stop_argv) == (
        new.argv,
        new.env,
        new.proxy,
        new.check_endpoint,
        new.stop_argv,
    )


def _retrieve(task: asyncio.Task[None]) -> None:
    # The failure reaches the requests that waited on the task; nobody else needs it logged.
    if not task.cancelled():
        task.exception()


def _whole_seconds(ttl: float) -> int:
    """A ttl as `/running` shows it, llama-swap's way: 0 for never, else whole seconds."""
    return 0 if math.isinf(ttl) else max(1, math.ceil(ttl))
