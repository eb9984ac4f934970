"""The `timeouts` llama-swap gives its http.Transport and net.Dialer, on the proxy's own
clients: TCP keep-alive probes every `keepalive` seconds, and `connect` plus `tlsHandshake` for
a connection to an https URL (internal/process/process_command.go, internal/router/peer.go)."""

from __future__ import annotations

import asyncio
import socket

from aiohttp import web
from aiohttp.test_utils import TestServer

from halogen.llamaswap.config import Timeouts
from halogen.runtime.process import dialing


async def held(request: web.Request) -> web.StreamResponse:
    """An answer whose body ends only after a while: the client holds its connection till then."""
    response = web.StreamResponse()
    await response.prepare(request)
    await response.write(b"o")
    await asyncio.sleep(0.2)
    await response.write(b"k")
    await response.write_eof()
    return response


async def keepalive_options(timeouts: Timeouts) -> tuple[int, int, int]:
    """SO_KEEPALIVE, TCP_KEEPIDLE and TCP_KEEPINTVL of a connection the client opened."""
    app = web.Application()
    app.router.add_get("/", held)
    async with (
        TestServer(app, host="127.0.0.1") as server,
        dialing.client(timeouts, str(server.make_url("/")), limit=0) as client,
        client.get(server.make_url("/")) as response,
    ):
        assert response.status == 200
        assert response.connection is not None and response.connection.transport is not None
        sock: socket.socket = response.connection.transport.get_extra_info("socket")
        options = (
            sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE),
            sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE),
            sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL),
        )
        assert await response.read() == b"ok"
        return options


async def test_connections_probe_with_the_keepalive_period_and_go_s_default_for_0() -> None:
    assert await keepalive_options(Timeouts(keepalive=7)) == (1, 7, 7)
    assert await keepalive_options(Timeouts(keepalive=0)) == (1, 15, 15)  # net.Dialer's default


def test_an_https_connection_may_take_connect_plus_tls_handshake() -> None:
    timeouts = Timeouts(connect=5, tlsHandshake=10)
    assert dialing.connect_limit(timeouts, "https://api.example.com") == 15
    assert dialing.connect_limit(timeouts, "http://127.0.0.1:9000") == 5
    assert dialing.connect_limit(Timeouts(connect=0), "https://api.example.com") is None
