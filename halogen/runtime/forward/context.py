"""What every HTTP route works with: the `Runtime` (the Swapper, the config it serves, logs and
metrics, the naming of models), how a route finds it, and how a request to a local model is
held, counted and forwarded. Which model a name means is `forward.naming`'s. Imports no route
module."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

from aiohttp import web

from halogen.llamaswap.resolved import Resolved
from halogen.runtime.base import activity, events
from halogen.runtime.base.captures import Captures
from halogen.runtime.base.errors import NotReady, Refusal
from halogen.runtime.base.inflight import Entry, Inflight
from halogen.runtime.base.logs import Logs
from halogen.runtime.base.metrics import Metrics, generation_rate
from halogen.runtime.forward import jsonbody, proxy
from halogen.runtime.forward.loading import Loading, openai_frame
from halogen.runtime.forward.naming import Named, Naming
from halogen.runtime.forward.relay import CAPTURE, OUTCOME, Outcome, error_event, relay
from halogen.runtime.forward.relay import sent as relay_sent
from halogen.runtime.forward.target import Local, Peer, Target
from halogen.runtime.process.upstream import State, Upstream
from halogen.runtime.scheduling.swapper import Swapper

# The model a request went to, for the access log.
MODEL = web.RequestKey("model", str)
# The request's row among those in flight (llama-swap's UI).
IN_FLIGHT = web.RequestKey("in_flight", Entry)


@dataclass
class Counted:
    """What a request to a model ends with: the status /metrics counts it under, the tokens it
    counts, and what the activity log shows besides."""

    status: int = 500  # what an unforeseen exception is counted as
    began_ns: int = field(default_factory=time.monotonic_ns)  # when the request reached its model
    tokens: tuple[int, int] | None = None
    timings: dict[str, Any] | None = None
    error: str = ""
    first_event_ns: int | None = None  # a 200 event stream's first bytes (monotonic)

    def took(self, outcome: Outcome) -> None:
        self.status = outcome.counted
        self.tokens, self.timings, self.error = outcome.tokens, outcome.timings, outcome.error
        self.first_event_ns = outcome.first_event_ns if outcome.status == 200 else None


@dataclass
class Runtime:
    """What every route works with."""

    swapper: Swapper
    created: int = field(default_factory=lambda: int(time.time()))
    naming: Naming = field(init=False)
    # llama-swap's UI: what /api/events publishes, and the requests in flight.
    events: events.Hub = field(default_factory=events.Hub)
    inflight: Inflight = field(default_factory=Inflight)
    activity: activity.Activity = field(init=False)
    captures: Captures = field(init=False)

    def __post_init__(self) -> None:
        self.naming = Naming(self.swapper)
        self.activity = activity.Activity(self.resolved.store_path, self.resolved.metrics_max)
        self.captures = Captures(self.resolved.capture_mb)
        self.inflight.publish = self._publish_inflight
        self.inflight.listening = self.events.listened

    def _publish_inflight(self, update: dict[str, Any]) -> None:
        self.events.publish(events.INFLIGHT, events.payload(update))

    @property
    def resolved(self) -> Resolved:
        # Read through the Swapper so a config reload is seen by every route at once.
        return self.swapper.resolved

    @property
    def logs(self) -> Logs:
        return self.swapper.logs

    @property
    def metrics(self) -> Metrics:
        return self.swapper.metrics

    def refuse_idle_websocket(self, request: web.Request, model_id: str) -> None:
        """compat.ignoreWebsockets (internal/config/model_config.go, llama-swap): a websocket
        never starts its model; `NotReady` when the model is not running."""
        if (
            self.resolved.models[model_id].ignore_websockets
            and request.headers.get("Upgrade", "").lower() == "websocket"
            and self.swapper.slot(model_id).phase is not State.READY
        ):
            raise NotReady(f"[{model_id}] process is not ready")

    @contextlib.contextmanager
    def counted(self, request: web.Request, model_id: str) -> Iterator[Counted]:
        """Count one request to `model_id` under the status the body sets, a refusal's own,
        or 499 when the client goes away; listed in flight meanwhile."""
        counted = Counted()
        entry = self.inflight.add(
            model_id,
            request.path,
            request.method,
            request.headers,
            request.remote or "",
            asyncio.current_task(),
        )
        request[IN_FLIGHT] = entry
        sink = self.captures.sink(request.path, entry.req_headers) if self.captures.enabled else None
        if sink is not None:
            request[CAPTURE] = sink
        try:
            yield counted
        except Refusal as exc:
            counted.status = exc.status
            counted.error = exc.message
            raise
        except (asyncio.CancelledError, ConnectionResetError):
            # The client went away: aiohttp cancels the handler, or a write to it fails.
            outcome = request.get(OUTCOME)
            if outcome is not None:
                counted.took(outcome)  # what it carried: its first token and tokens were real
            if outcome is None or not outcome.delivered or entry.cancelled:
                counted.status = 499  # unless the client had it all, and closed as it ended
                counted.error = "request cancelled" if entry.cancelled else "client went away"
            raise
        finally:
            self.inflight.remove(entry)
            self._observe(model_id, counted)
            self._record(request, model_id, entry, counted)

    def _observe(self, model_id: str, counted: Counted) -> None:
        """What a request tells /metrics: its status, its tokens, the time to its first event (a
        200 event stream only: a whole answer has no first token to see) and the generation
        speed the model timed. The one place each is observed, beside the activity row."""
        self.metrics.request(model_id, counted.status)
        self.metrics.tokens(model_id, counted.tokens)
        if counted.first_event_ns is not None:
            self.metrics.first_token(model_id, (counted.first_event_ns - counted.began_ns) / 1e9)
        self.metrics.generation_rate(model_id, generation_rate({"timings": counted.timings}))

    def _record(self, request: web.Request, model_id: str, entry: Entry, counted: Counted) -> None:
        """The request's row in the activity log, and its `activity` event (record in
        internal/server/metrics.go, llama-swap): the one place a request to a model is recorded."""
        self.activity.keep = self.resolved.metrics_max
        took_ms = int(1000 * (time.time() - entry.started))
        status = counted.status
        error = counted.error
        if status >= 400 and not error:
            error = (
                f"{status} {HTTPStatus(status).phrase}"
                if status in HTTPStatus._value2member_map_
                else f"HTTP {status}"
            )

        def make(row_id: int) -> activity.Entry:
            return activity.Entry(
                id=row_id,
                timestamp=time.time(),
                model=model_id,
                req_path=request.path,
                resp_content_type=entry.answer_headers.get("Content-Type", ""),
                resp_status_code=status,
                tokens=activity.tokens_of(counted.tokens, counted.timings, None),
                duration_ms=max(took_ms, activity.timings_ms(counted.timings)),
                error_msg=error if status != 200 else "",
            )

        row = self.activity.record(make)
        sink = request.get(CAPTURE)
        if sink is not None:
            self.captures.add(row.id, sink, entry.resp_headers, failed=status != 200)
        if len(self.events):
            self.events.publish(events.ACTIVITY, events.payload({"id": row.id}))

    @contextlib.asynccontextmanager
    async def holding(
        self, request: web.Request, model_id: str, keep_alive: float | None = None
    ) -> AsyncIterator[tuple[Counted, Upstream]]:
        """Hold `model_id` (started or swapped in as needed) for one request, counted under
        the status the block sets (see `counted`); `keep_alive` as `Swapper.acquire` takes it."""
        request[MODEL] = model_id
        with self.counted(request, model_id) as counted:
            async with self.swapper.acquire(model_id, keep_alive) as upstream:
                yield counted, upstream

    @contextlib.asynccontextmanager
    async def reaching(
        self,
        request: web.Request,
        named: Named,
        keep_alive: float | None = None,
        progress: Loading | None = None,
    ) -> AsyncIterator[tuple[Counted, Target, int]]:
        """The target `named` means, for one request: a peer, or a local model held (started
        or swapped in as needed, `progress` told when it is); counted under the status the
        block sets (see `counted`), with how long the request waited for it (ns). The one
        place a request's way asks "local or peer?"."""
        request[MODEL] = named.model_id
        if named.peer is not None:
            with self.counted(request, named.model_id) as counted:
                yield counted, Peer.of(request, named.peer), 0
            return
        waited = time.monotonic_ns()
        async with self.holding(request, named.model_id, keep_alive) as (counted, upstream):
            load_ns = time.monotonic_ns() - waited
            if progress is not None:
                await progress.done()
            yield counted, Local(upstream), load_ns

    async def forward(
        self,
        request: web.Request,
        model_id: str,
        path_qs: str,
        body: bytes | None,
        *,
        show_loading: bool = False,
    ) -> web.StreamResponse:
        """Send a request to `model_id` and stream its answer back; with `show_loading`, a
        model that is not ready yet streams loading progress first (`loading.Loading`)."""
        progress = None
        if show_loading and self.swapper.slot(model_id).phase is not State.READY:
            progress = await Loading.begin(
                request, model_id, openai_frame, "text/event-stream", self.swapper.position_reader()
            )
        try:
            local = Named(model_id, model_id)
            async with self.reaching(request, local, progress=progress) as (counted, target, _):
                headers = proxy.request_headers(
                    request.headers, drop_credentials=bool(self.resolved.api_keys)
                )
                relay_sent(request, body)
                answer = await target.open(request.method, path_qs, headers, body)
                response, outcome = await relay(
                    request, target, answer, prepared=None if progress is None else progress.response
                )
                counted.took(outcome)
            return response
        except Refusal as exc:
            if progress is None:
                raise
            # The stream has begun with a 200: the failure is its last event.
            await progress.stop()
            await progress.response.write(error_event(exc.text(), exc.status, exc.kind))
            await progress.response.write_eof()
            return progress.response
        finally:
            if progress is not None:
                await progress.stop()


RUNTIME = web.AppKey("runtime", Runtime)


def runtime_of(request: web.Request) -> Runtime:
    return request.app[RUNTIME]


async def read_json(request: web.Request) -> dict[str, Any]:
    """A request body that must be a JSON object, parsed within `jsonbody`'s limits after a walk
    that leaves the event loop free: `BadRequest` or `TooLarge` otherwise."""
    return await jsonbody.parse_sliced(await request.read())
