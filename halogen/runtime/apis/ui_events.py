"""`/api/events`: the Server-Sent Events stream llama-swap's UI is fed by (handleAPIEvents in
internal/server/apigroup.go, llama-swap; read by `handleAPIEventMessage` in ui/src/stores/api.ts).

Each message is `event:message` with the `{type, data}` envelope, `data` JSON text. On connect a
client is sent, in llama-swap's order: the proxy's and the models' log history (`logData`), every
model's state (`modelStatus`), the `ui` config (`uiConfig`), the active profile
(`profileChanged`) and the requests in flight (`inflight`, a snapshot); then each change as it
happens. What is published goes through `base.events.Hub`: a client that falls 1024 messages
behind is dropped, never waited on."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

from halogen import __version__
from halogen.runtime.apis import perf
from halogen.runtime.apis.openai import render_capabilities
from halogen.runtime.base import events
from halogen.runtime.base.inflight import UPDATE_INTERVAL
from halogen.runtime.base.logs import PROXY_LINES, UPSTREAM_LINES
from halogen.runtime.forward.context import IN_FLIGHT, RUNTIME, Runtime, runtime_of


def model_status(runtime: Runtime) -> list[dict[str, Any]]:
    """modelStatus (internal/server/apigroup.go, llama-swap): every local model by id with its
    state ("stopped" when no process runs), then each peer's models."""
    resolved = runtime.resolved
    rows: list[dict[str, Any]] = []
    for mid in sorted(resolved.models):
        model = resolved.models[mid]
        row: dict[str, Any] = {
            "id": mid,
            "name": model.name,
            "description": model.description,
            "state": str(runtime.swapper.slot(mid).phase),
            "unlisted": model.unlisted,
            "peerID": "",
        }
        if model.aliases:
            row["aliases"] = list(model.aliases)
        if not model.capabilities.empty():
            rendered = render_capabilities(model.capabilities)
            if "capabilities" in rendered:
                row["capabilities"] = rendered["capabilities"]
            if "context_length" in rendered:
                row["context_length"] = rendered["context_length"]
        rows.append(row)
    for fqn in resolved.peer_names:
        rows.append(
            {
                "id": fqn,
                "name": "",
                "description": "",
                "state": "",
                "unlisted": False,
                "peerID": resolved.peers[fqn].peer,
            }
        )
    return rows


def ui_config(runtime: Runtime) -> dict[str, Any]:
    """The `ui` block as llama-swap's UI reads it (UIConfig in internal/config/config.go)."""
    return {"activity": {"session_id": list(runtime.resolved.session_headers)}}


def profile_state(runtime: Runtime) -> dict[str, Any]:
    return {"active": runtime.swapper.profile or None}


class Watch:
    """Publishes `modelStatus` (and `profileChanged` first when the profile changed) each time
    the Swapper changes something the UI shows: a phase, the models a reload left, the profile.
    Called by the Swapper on every change, so it compares a cheap key before it encodes."""

    def __init__(self, runtime: Runtime) -> None:
        self._runtime = runtime
        self._models: tuple[tuple[str, str], ...] = ()
        self._resolved: object = None
        self._profile = ""

    def __call__(self) -> None:
        runtime = self._runtime
        swapper = runtime.swapper
        if not len(runtime.events):
            # Nobody listens: a client that connects is sent the state as it is then.
            self._resolved = None
            return
        models = tuple((mid, swapper.slot(mid).phase.value) for mid in swapper.resolved.models)
        profile = swapper.profile
        if profile != self._profile:
            self._profile = profile
            runtime.events.publish(events.PROFILE_CHANGED, events.payload(profile_state(runtime)))
        elif models == self._models and swapper.resolved is self._resolved:
            return
        self._models, self._resolved = models, swapper.resolved
        runtime.events.publish(events.MODEL_STATUS, events.payload(model_status(runtime)))

    def seen(self) -> None:
        """A client was just sent the current state: later changes compare with it."""
        swapper = self._runtime.swapper
        self._models = tuple((mid, swapper.slot(mid).phase.value) for mid in swapper.resolved.models)
        self._resolved = swapper.resolved
        self._profile = swapper.profile


WATCH = web.AppKey("ui_watch", Watch)
SAMPLER = web.AppKey("perf_sampler", perf.Sampler)
HARDWARE = web.AppKey("hardware", dict[str, Any])


async def _publish_lines(runtime: Runtime, source: str) -> None:
    """Each log line of `source` as a `logData` message (llama-swap sends each write)."""
    follow = runtime.logs.follow(source)
    try:
        async for line in follow:
            if len(runtime.events):
                runtime.events.publish(
                    events.LOG_DATA, events.payload({"source": source, "data": line + "\n"})
                )
    finally:
        follow.close()


async def _tick(runtime: Runtime) -> None:
    """The `upsert`s of answers that grew, every 250 ms while anyone listens."""
    while True:
        await asyncio.sleep(UPDATE_INTERVAL)
        if len(runtime.inflight) and len(runtime.events):
            runtime.inflight.tick()


async def feed(app: web.Application) -> AsyncIterator[None]:
    """The publishers that run beside the server (a cleanup context)."""
    runtime = app[RUNTIME]
    watch = Watch(runtime)
    app[WATCH] = watch
    runtime.swapper.watchers.append(watch)
    tasks = [asyncio.create_task(_publish_lines(runtime, s)) for s in (PROXY_LINES, UPSTREAM_LINES)]
    tasks.append(asyncio.create_task(_tick(runtime)))
    every = runtime.resolved.performance_every
    if every > 0:
        sampler = perf.Sampler(every)
        app[SAMPLER] = sampler
        tasks.append(asyncio.create_task(sampler.run()))
    try:
        app[HARDWARE] = await asyncio.to_thread(perf.hardware, version=__version__)
    except (OSError, ValueError) as exc:
        runtime.logs.proxy(f"hardware detection failed: {exc}", "warn")
    yield
    runtime.swapper.watchers.remove(watch)
    await runtime.activity.close()
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def close_streams(app: web.Application) -> None:
    app[RUNTIME].events.close()


async def answered(request: web.Request, response: web.StreamResponse) -> None:
    """An `on_response_prepare` signal: a request in flight shows its answer's headers, then
    how much of it was written."""
    entry = request.get(IN_FLIGHT)
    if entry is None:
        return

    def sent() -> int:
        # The bytes written to the client so far: aiohttp's writer counts them (read only).
        writer = getattr(response, "_payload_writer", None)
        return int(getattr(writer, "output_size", 0))

    runtime_of(request).inflight.answered(entry, response.headers, sent)


def initial(runtime: Runtime) -> bytes:
    """What a client is sent on connect, in llama-swap's order (handleAPIEvents)."""
    history = [
        events.frame(
            events.LOG_DATA,
            events.payload(
                {"source": source, "data": "".join(line + "\n" for line in runtime.logs.history(source))}
            ),
        )
        for source in (PROXY_LINES, UPSTREAM_LINES)
    ]
    return b"".join(
        [
            *history,
            events.frame(events.MODEL_STATUS, events.payload(model_status(runtime))),
            events.frame(events.UI_CONFIG, events.payload(ui_config(runtime))),
            events.frame(events.PROFILE_CHANGED, events.payload(profile_state(runtime))),
            events.frame(events.INFLIGHT, events.payload(runtime.inflight.snapshot())),
        ]
    )


async def stream(request: web.Request) -> web.StreamResponse:
    runtime = runtime_of(request)
    headers = {
        "Content-Type": "text/event-stream",
        "Cache-Control": "no-cache",
        "X-Content-Type-Options": "nosniff",
        "X-Accel-Buffering": "no",  # nginx must not buffer the stream
    }
    if request.method == "HEAD":
        # The headers only: a stream that never ends would hold the connection for ever.
        return web.Response(headers=headers)
    response = web.StreamResponse(headers=headers)
    await response.prepare(request)
    transport = request.transport

    def drop() -> None:
        # A client this far behind is not reading: end its connection (the write it may be
        # waiting in fails), and its EventSource reconnects to the current state.
        runtime.logs.proxy("an /api/events client fell 1024 messages behind: dropped", "warn")
        if transport is not None:
            transport.abort()

    subscriber = runtime.events.subscribe(on_drop=drop)
    try:
        first = initial(runtime)  # built before any await: nothing published is missed
        request.app[WATCH].seen()
        await response.write(first)
        while True:
            frames = await subscriber.next()
            if not frames:
                break
            await response.write(b"".join(frames))
    except ConnectionResetError:
        pass
    finally:
        subscriber.close()
    return response
