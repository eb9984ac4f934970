"""What a client connection may cost: time to send a request's header and body, time to sit idle
between requests, and how many connections are open at once.

aiohttp closes a connection idle between requests (`keepalive_timeout`) but has no deadline for a
header that arrives a byte at a time, none for a body, and no cap on connections. The header
deadline and the cap live in `Guard`, a thin protocol in front of aiohttp's own for each
connection; the body deadline in `body_middleware`. Streaming an answer is never timed: a long
generation takes as long as it takes.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, cast

from aiohttp import web
from aiohttp.typedefs import Middleware

from halogen.runtime.base.errors import Overloaded, RequestTimeout
from halogen.runtime.serve.listen import Limits

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_BUSY_TEXT = b"too many open connections; retry later\n"
# The answer a connection over the cap gets before it is closed.
_BUSY = (
    b"HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nRetry-After: 1\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    + f"Content-Length: {len(_BUSY_TEXT)}\r\n\r\n".encode()
    + _BUSY_TEXT
)


class Guard(asyncio.Protocol):
    """One client connection in front of aiohttp's protocol: counted against the cap, and
    closed when a request's header does not arrive within `header_timeout`.

    A request is "in progress" from when its handler begins (`begin`, called by the
    middleware: the header is complete by then) to when it returns (`end`); the header clock
    runs from the connection's opening, and from the first byte received while no request is
    in progress."""

    def __init__(self, pool: Pool) -> None:
        self._pool = pool
        self._inner: asyncio.Protocol | None = None
        self._transport: asyncio.Transport | None = None
        self._deadline: asyncio.TimerHandle | None = None
        self._busy = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)
        if self._pool.open >= self._pool.limits.max_connections:
            self._pool.refused += 1
            self._transport.write(_BUSY)
            self._transport.close()
            return
        self._pool.open += 1
        self._inner = self._pool.factory()
        self._arm()
        self._inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if self._inner is None:
            return
        if not self._busy and self._deadline is None:
            self._arm()
        self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received() if self._inner is not None else None

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        if self._inner is not None:
            self._pool.open -= 1
            inner, self._inner = self._inner, None
            inner.connection_lost(exc)

    def pause_writing(self) -> None:
        if self._inner is not None:
            self._inner.pause_writing()

    def resume_writing(self) -> None:
        if self._inner is not None:
            self._inner.resume_writing()

    def begin(self) -> None:
        self._busy = True
        self._disarm()

    def end(self) -> None:
        self._busy = False

    def _arm(self) -> None:
        loop = asyncio.get_running_loop()
        self._deadline = loop.call_later(self._pool.limits.header_timeout, self._expire)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expire(self) -> None:
        self._deadline = None
        if not self._busy and self._transport is not None:
            self._pool.timed_out += 1
            self._transport.close()


class Pool:
    """The open connections of one listening socket, and the protocol factory that makes them."""

    def __init__(self, factory: Callable[[], asyncio.Protocol], limits: Limits) -> None:
        self.factory = factory
        self.limits = limits
        self.open = 0
        self.refused = 0  # over the cap
        self.timed_out = 0  # header not complete in time

    def __call__(self) -> Guard:
        return Guard(self)


class GuardedSite(web.TCPSite):
    """`web.TCPSite` whose connections go through a `Pool` (the only change to `start`)."""

    def __init__(self, runner: web.BaseRunner, host: str, port: int, limits: Limits, **kwargs: Any) -> None:
        super().__init__(runner, host, port, **kwargs)
        self.limits = limits
        self.pool: Pool | None = None

    async def start(self) -> None:
        # BaseSite.start registers the site with its runner; TCPSite.start would then bind with
        # the runner's own factory, which this replaces.
        await web.BaseSite.start(self)
        server = self._runner.server
        assert server is not None
        self.pool = Pool(server, self.limits)
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            self.pool,
            self._host,
            self._port,
            ssl=self._ssl_context,
            backlog=self._backlog,
            reuse_address=self._reuse_address,
            reuse_port=self._reuse_port,
        )


def guard_of(request: web.Request) -> Guard | None:
    transport = request.transport
    protocol = transport.get_protocol() if transport is not None else None
    return protocol if isinstance(protocol, Guard) else None


@web.middleware
async def guard_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Stop the connection's header clock while its request is handled (the outermost
    middleware: the header is complete once any middleware runs)."""
    guard = guard_of(request)
    if guard is None:
        return await handler(request)
    guard.begin()
    try:
        return await handler(request)
    finally:
        guard.end()


# A body up to this size is read without asking for room: 512 connections of them hold 32 MiB.
SMALL_BODY = 64 * 1024


class BodyRoom:
    """Room for the larger request bodies held at once: `size` bytes in all (the body limit), one
    body always let in. A request whose body needs more room than is left waits, before its
    body is read, until a request holding room ends; so clients that each send a body near the
    limit cost the memory of about one body at a time, not one per connection."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.held = 0
        self._freed = asyncio.Condition()

    @contextlib.asynccontextmanager
    async def hold(self, length: int) -> AsyncIterator[None]:
        async with self._freed:
            await self._freed.wait_for(lambda: self.held == 0 or self.held + length <= self.size)
            self.held += length
        try:
            yield
        finally:
            async with self._freed:
                self.held -= length
                self._freed.notify_all()


def body_middleware(limits: Limits, max_body: int) -> Middleware:
    """Read the request's body (aiohttp keeps it for the route's own `read()`) within
    `body_timeout`; refuse at once a body declared larger than `max_body`, which would
    otherwise be waited for. After the key check: a client without a key costs no body.
    A body over `SMALL_BODY` (or of unknown length) is read and handled only once there is
    room for it (`BodyRoom`); waiting for room counts against `body_timeout`."""
    room = BodyRoom(max_body)

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        length = request.content_length
        if length is not None and length > max_body:
            raise web.HTTPRequestEntityTooLarge(max_size=max_body, actual_size=length)
        if not request.body_exists:
            return await handler(request)
        needed = max_body if length is None else length
        deadline = asyncio.get_running_loop().time() + limits.body_timeout
        async with contextlib.AsyncExitStack() as held:
            if needed > SMALL_BODY:
                try:
                    async with asyncio.timeout_at(deadline):
                        await held.enter_async_context(room.hold(needed))
                except TimeoutError:
                    raise Overloaded("the proxy holds other large request bodies; retry later") from None
            try:
                async with asyncio.timeout_at(deadline):
                    await request.read()
            except TimeoutError:
                raise RequestTimeout(
                    f"the request body did not arrive within {limits.body_timeout:g} s"
                ) from None
            return await handler(request)

    return middleware
