"""Which model a request's name means: a profile's pin, a selector's choice (with the spillover
reservation it holds until the request ends), a local id or alias, or a peer's model.

What llama-swap does before it proxies: the profile (internal/server/profiles.go), the selector
(internal/server/selector.go), then the local models and the peers (internal/router/peer.go);
the body then names the model the way ReplaceRequestModel does (internal/swaputil/http.go)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from halogen.llamaswap.resolved import PeerRoute, Resolved, SelectorRule, peer_fqn
from halogen.runtime.base.errors import MissingModel, NoTargetAvailable, UnknownModel
from halogen.runtime.scheduling import selectors
from halogen.runtime.scheduling.swapper import Swapper

# A spillover reservation a request holds until it ends: (selector id, model id).
RESERVATION = web.RequestKey("reservation", tuple[str, str])


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
class Naming:
    """Names to models, against the config the Swapper serves now."""

    swapper: Swapper
    # Spillover reservations per selector, and the turn that breaks its ties (llama-swap keeps
    # both per selector: internal/server/selector.go).
    reserved: dict[str, Counter[str]] = field(default_factory=dict)
    turns: dict[str, int] = field(default_factory=dict)

    @property
    def resolved(self) -> Resolved:
        # Read through the Swapper so a config reload is seen at once.
        return self.swapper.resolved

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

    def release(self, request: web.Request) -> None:
        """Give back the spillover reservation a request held, if any."""
        held = request.get(RESERVATION)
        if held is not None:
            selector_id, model_id = held
            counts = self.reserved.get(selector_id)
            if counts is not None and counts[model_id] > 0:
                counts[model_id] -= 1
