"""The pooled HTTP clients that talk to one model's server: one session whose connections are
kept alive between requests, and one that opens a new connection for every request.

llama-swap has no type of its own for this: each start of a process builds a new
`httputil.ReverseProxy` over an `http.Transport` (doStart in internal/process/process_command.go),
and this is that Transport. Like it, the pool lives as long as one process: `Upstream` closes it
when its process starts and when it stops, so a connection to a dead process is never offered.
"""

from __future__ import annotations

from typing import Any

import aiohttp

from halogen.llamaswap.config import Timeouts
from halogen.runtime.process import dialing

# llama-server closes a keep-alive connection idle for 5 s (cpp-httplib's
# CPPHTTPLIB_KEEPALIVE_TIMEOUT_SECOND, which tools/server/server-http.cpp leaves as it is): a
# pooled connection idle for longer may be closed just as a request is sent on it. The pool
# drops its connections well before that.
UPSTREAM_KEEPALIVE = 2.0


class ClientPool:
    """The clients for the server at `url`, after the model's `timeouts` (read when a session
    is made: a reload that keeps the process gives its next sessions the new ones)."""

    def __init__(self, timeouts: Timeouts, url: str) -> None:
        self.timeouts = timeouts
        self.url = url
        self._session: aiohttp.ClientSession | None = None
        self._fresh: aiohttp.ClientSession | None = None

    @property
    def session(self) -> aiohttp.ClientSession:
        """The one pooled client for this model's current process."""
        if self._session is None or self._session.closed:
            # timeouts.idleConn (0 = no limit) can only shorten the pool's keep-alive: a longer
            # one would outlive llama-server's own.
            idle = self.timeouts.idleConn
            keepalive = min(UPSTREAM_KEEPALIVE, idle) if idle else UPSTREAM_KEEPALIVE
            self._session = self._client(limit=0, keepalive_timeout=keepalive)
        return self._session

    @property
    def fresh_session(self) -> aiohttp.ClientSession:
        """A client that opens a new connection for every request (the retry after a pooled
        connection turned out to be closed)."""
        if self._fresh is None or self._fresh.closed:
            self._fresh = self._client(limit=0, force_close=True)
        return self._fresh

    def _client(self, **pool: Any) -> aiohttp.ClientSession:
        """A client for this model's server, which marks an `Attempt` that reused a connection."""
        trace = aiohttp.TraceConfig()
        trace.on_connection_reuseconn.append(_on_reuse)
        return dialing.client(self.timeouts, self.url, traces=[trace], **pool)

    async def close(self) -> None:
        """Close both clients and their connections; the next use opens new ones."""
        if self._session is not None:
            await self._session.close()
            self._session = None
        if self._fresh is not None:
            await self._fresh.close()
            self._fresh = None


async def _on_reuse(
    session: aiohttp.ClientSession, context: object, params: aiohttp.TraceConnectionReuseconnParams
) -> None:
    request_context = getattr(context, "trace_request_ctx", None)
    if isinstance(request_context, Attempt):
        request_context.reused = True


class Attempt:
    """One try at sending a request: whether the pool handed it a connection used before."""

    reused = False
