"""A target: what a request is sent to, a local model's process or a peer. Both open a request
and say how an exchange with them broke, so "local or peer?" is asked once, when a request's
target is held (`context.Runtime.reaching`), and never again on its way.

llama-swap does the same with one `http.Handler` per kind: a model's process proxies to its
llama-server (ProxyRequest in internal/process/process.go), a peer to the peer's URL
(ServeHTTP in internal/router/peer.go); each hands the answer to a reverse proxy, which copies
it back (here: `relay`)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Protocol

import aiohttp
from aiohttp import web
from multidict import CIMultiDict

from halogen.llamaswap.config import Timeouts
from halogen.llamaswap.resolved import PeerRoute, peer_fqn
from halogen.runtime.base.errors import UpstreamFailed
from halogen.runtime.forward import proxy
from halogen.runtime.process import dialing
from halogen.runtime.process.upstream import Upstream


class Target(Protocol):
    """Where a request is sent; `model_id` is what it is counted and logged under."""

    @property
    def model_id(self) -> str: ...

    async def open(
        self, method: str, path_qs: str, headers: CIMultiDict[str], body: bytes | None
    ) -> aiohttp.ClientResponse:
        """Send the request; `UpstreamFailed` when the target does not answer."""
        ...

    async def failed(self, what: str, exc: BaseException) -> UpstreamFailed:
        """The error for an exchange that broke (`what`: how)."""
        ...


@dataclass(frozen=True)
class Local:
    """A model's own process, held for the request (`Swapper.acquire`)."""

    upstream: Upstream

    @property
    def model_id(self) -> str:
        return self.upstream.id

    async def open(
        self, method: str, path_qs: str, headers: CIMultiDict[str], body: bytes | None
    ) -> aiohttp.ClientResponse:
        return await proxy.open_upstream(self.upstream, method, path_qs, headers=headers, body=body)

    async def failed(self, what: str, exc: BaseException) -> UpstreamFailed:
        return await proxy.failure(self.upstream, what, exc)


class PeerFailed(UpstreamFailed):
    code = "peer_failed"


# One pooled client per peer and timeouts (set up by `peers.register`).
SESSIONS = web.AppKey("peer_sessions", dict)


def session(app: web.Application, route: PeerRoute) -> aiohttp.ClientSession:
    """One pooled client per peer, with the peer's connect and idle timeouts (a reloaded config
    that changes them gets a client of its own)."""
    sessions: dict[tuple[str, Timeouts], aiohttp.ClientSession] = app[SESSIONS]
    key = (route.peer, route.timeouts)
    found = sessions.get(key)
    if found is None or found.closed:
        timeouts = route.timeouts
        found = dialing.client(timeouts, route.proxy, limit=0, keepalive_timeout=timeouts.idleConn or 90)
        sessions[key] = found
    return found


@dataclass(frozen=True)
class Peer:
    """A model another server offers (llama-swap's `peers`)."""

    session: aiohttp.ClientSession
    route: PeerRoute

    @classmethod
    def of(cls, request: web.Request, route: PeerRoute) -> Peer:
        """The peer that offers `route`'s model, on its pooled client."""
        return cls(session(request.app, route), route)

    @property
    def model_id(self) -> str:
        return peer_fqn(self.route.peer, self.route.model)

    async def open(
        self, method: str, path_qs: str, headers: CIMultiDict[str], body: bytes | None
    ) -> aiohttp.ClientResponse:
        """Send a request to the peer, with its `apiKey` as Bearer token and x-api-key in place
        of the client's (internal/router/peer.go); `PeerFailed` when it does not answer in time."""
        route = self.route
        if route.api_key:
            for header in proxy.CREDENTIALS:
                headers.popall(header, None)
            headers["Authorization"] = f"Bearer {route.api_key}"
            headers["x-api-key"] = route.api_key
        wait = route.timeouts.responseHeader or None
        try:
            async with asyncio.timeout(wait):
                return await self.session.request(
                    method, route.proxy + path_qs, headers=headers, data=body, allow_redirects=False
                )
        except TimeoutError:
            raise PeerFailed(f"peer {route.peer!r} sent no response headers within {wait:g} s") from None
        except (aiohttp.ClientError, OSError) as exc:
            raise await self.failed("did not answer", exc) from None

    async def failed(self, what: str, exc: BaseException) -> UpstreamFailed:
        return PeerFailed(f"peer {self.route.peer!r} {what}: {exc or type(exc).__name__}")
