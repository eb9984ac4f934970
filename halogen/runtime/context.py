"""What every HTTP route works with: the `Runtime` (the Swapper, the config it serves, logs and
metrics), how a route finds it, and the small helpers every API shares. Imports no route module."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from halogen.llamaswap.resolve import PeerRoute, Resolved, SelectorRule, peer_fqn
from halogen.runtime import jsonbody, proxy, selectors
from halogen.runtime.errors import (
    MissingModel,
    NoTargetAvailable,
    NotReady,
    Refusal,
    UnknownModel,
)
from halogen.runtime.forward.relay import error_event, relay
from halogen.runtime.forward.target import Local
from halogen.runtime.loading import Loading, openai_frame
from halogen.runtime.logs import Logs
from halogen.runtime.metrics import Metrics
from halogen.runtime.swapper import Swapper
from halogen.runtime.upstream import State, Upstream

# The model a request went to, for the access log.
MODEL = web.RequestKey("model", str)
# A spillover reservation a request holds until it ends: (selector id, model id).
RESERVATION = web.RequestKey("reservation", tuple[str, str])


@dataclass
class Counted:
    """The status a request to a model ends with, as /metrics counts it."""

    status: int = 500  # what an unforeseen exception is counted as


@dataclass(frozen=True)
class Named:
    """The model a request goes to, and the name it goes on with: the one asked for, or what a
    profile pins it to or a selector chose for it. The body is rewritten to that name, as
    ReplaceRequestModel does after profiles.go and selector.go (internal/server, llama-swap),
    and the name's `setParamsByID` entry applies."""

    model_id: str  # `<peer>/<model>` for a peer's model
    name: str
    peer: PeerRoute | None = None  # a peer's model: named so, or chosen by a selector


@dataclass
class Runtime:
    """What every route works with."""

    swapper: Swapper
    created: int = field(default_factory=lambda: int(time.time()))
    # Spillover reservations per selector, and the turn that breaks its ties (llama-swap keeps
    # both per selector: internal/server/selector.go).
    reserved: dict[str, Counter[str]] = field(default_factory=dict)
    turns: dict[str, int] = field(default_factory=dict)

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

    def model_id(self, name: Any, request: web.Request | None = None) -> str:
        """The local model id a request names; `MissingModel` or `UnknownModel` otherwise (also
        for a peer's model: the routes that ask only serve local ones)."""
        named = self.named(name, request)
        if named.peer is not None:
            raise UnknownModel(named.name)
        return named.model_id

    def named(self, name: Any, request: web.Request | None = None) -> Named:
        """The model a request names, and the name it goes on with. The active profile's pin
        applies first (a pin to nothing disables the id), then a selector id is resolved to one
        of its targets for this request (a spillover choice is reserved on `request` until it
        ends); a name no local model answers to may be a peer's. `MissingModel` or
        `UnknownModel` when it names none."""
        if not isinstance(name, str) or not name.strip():
            raise MissingModel('the request names no "model"')
        resolved = self.resolved
        profile = resolved.profiles.get(self.swapper.profile)
        if profile is not None and name in profile.pins:
            pinned = profile.pins[name]
            if not pinned:
                raise UnknownModel(name)  # disabled while the profile is active
            name = pinned
        selector = resolved.selectors.get(name)
        if selector is not None:
            return self._choose(selector, request)
        found = resolved.lookup(name)
        if found is not None:
            return Named(found, name)
        route = resolved.peer(name)
        if route is None:
            raise UnknownModel(name)
        return Named(peer_fqn(route.peer, route.model), name, route)

    def _choose(self, selector: SelectorRule, request: web.Request | None) -> Named:
        phases = {
            mid: str(self.swapper.slot(mid).phase) for mid in selector.models if mid not in selector.peers
        }
        reserved = self.reserved.setdefault(selector.id, Counter())
        turn = self.turns.get(selector.id, 0)
        try:
            choice = selectors.choose(selector, phases, reserved, turn)
        except selectors.NoTarget as exc:
            raise NoTargetAvailable(str(exc)) from None
        if choice.took_turn:
            self.turns[selector.id] = turn + 1
        if choice.reserve and request is not None:
            reserved[choice.model] += 1
            request[RESERVATION] = (selector.id, choice.model)
        if choice.model in selector.peers:
            return Named(choice.model, choice.target, self.resolved.peers[choice.model])
        return Named(choice.model, choice.target)

    def refuse_idle_websocket(self, request: web.Request, model_id: str) -> None:
        """compat.ignoreWebsockets (internal/config/model_config.go, llama-swap): a websocket
        never starts its model; `NotReady` when the model is not running."""
        if (
            self.resolved.models[model_id].ignore_websockets
            and request.headers.get("Upgrade", "").lower() == "websocket"
            and self.swapper.slot(model_id).phase is not State.READY
        ):
            raise NotReady(f"[{model_id}] process is not ready")

    def release(self, request: web.Request) -> None:
        """Give back the spillover reservation a request held, if any."""
        held = request.get(RESERVATION)
        if held is not None:
            selector_id, model_id = held
            counts = self.reserved.get(selector_id)
            if counts is not None and counts[model_id] > 0:
                counts[model_id] -= 1

    @contextlib.contextmanager
    def counted(self, model_id: str) -> Iterator[Counted]:
        """Count one request to `model_id` under the status the body sets, a refusal's own,
        or 499 when the client goes away."""
        counted = Counted()
        try:
            yield counted
        except Refusal as exc:
            counted.status = exc.status
            raise
        except asyncio.CancelledError:
            counted.status = 499  # the client went away
            raise
        finally:
            self.metrics.request(model_id, counted.status)

    @contextlib.asynccontextmanager
    async def holding(
        self, request: web.Request, model_id: str, keep_alive: float | None = None
    ) -> AsyncIterator[tuple[Counted, Upstream]]:
        """Hold `model_id` (started or swapped in as needed) for one request, counted under
        the status the block sets (see `counted`); `keep_alive` as `Swapper.acquire` takes it."""
        request[MODEL] = model_id
        with self.counted(model_id) as counted:
            async with self.swapper.acquire(model_id, keep_alive) as upstream:
                yield counted, upstream

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
            async with self.holding(request, model_id) as (counted, upstream):
                if progress is not None:
                    await progress.done()
                target = Local(upstream)
                headers = proxy.request_headers(
                    request.headers, drop_credentials=bool(self.resolved.api_keys)
                )
                answer = await target.open(request.method, path_qs, headers, body)
                response, outcome = await relay(
                    request, target, answer, prepared=None if progress is None else progress.response
                )
                counted.status = outcome.counted
                self.metrics.tokens(model_id, outcome.tokens)
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
