"""How the proxy's clients open connections to a model's server or a peer, after a config's
`timeouts`, the way llama-swap's http.Transport and net.Dialer read them
(internal/process/process_command.go, internal/router/peer.go):

- `connect` and `tlsHandshake` bound how long a connection may take to open: Go gives the TCP
  connect and the TLS handshake a limit each; aiohttp has one limit around both, so it is their
  sum on an https URL and `connect` alone on http (0: no limit).
- `keepalive` is the period of TCP keep-alive probes on every connection (the Dialer's
  KeepAlive: Go turns probes on for any value, 0 meaning its default of 15 s), so a connection to
  a peer that vanished from the network is found dead instead of hanging.
- `expectContinue` has nothing to act on: the proxy holds a request's body whole before it sends
  it, and sends no `Expect: 100-continue`.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Sequence
from typing import Any

import aiohttp

from halogen.llamaswap.config import Timeouts

GO_DEFAULT_KEEPALIVE = 15  # seconds: net.Dialer's probe period when KeepAlive is 0

SocketFactory = Callable[[Any], socket.socket]


def keepalive_sockets(period: int) -> SocketFactory:
    """A socket factory (aiohttp's `socket_factory`) whose TCP sockets probe an idle peer every
    `period` seconds (0: Go's default), as setKeepAlivePeriod sets both the idle time and the
    interval."""
    seconds = period or GO_DEFAULT_KEEPALIVE

    def make(addr_info: Any) -> socket.socket:
        family, kind, proto, _, _ = addr_info
        sock = socket.socket(family=family, type=kind, proto=proto)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
            for option in ("TCP_KEEPIDLE", "TCP_KEEPINTVL"):
                if hasattr(socket, option):
                    sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, option), seconds)
        except OSError:
            pass  # a socket that takes no keep-alive options still connects
        return sock

    return make


def client(
    timeouts: Timeouts, url: str, *, traces: Sequence[aiohttp.TraceConfig] = (), **pool: Any
) -> aiohttp.ClientSession:
    """A client for the server at `url` with these `timeouts`: its connections probe with
    `keepalive` and take at most `connect_limit` to open; `pool`: the connector's options. It
    passes bytes on as the server sent them, Content-Encoding included."""
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(socket_factory=keepalive_sockets(timeouts.keepalive), **pool),
        auto_decompress=False,
        timeout=aiohttp.ClientTimeout(total=None, sock_connect=connect_limit(timeouts, url)),
        trace_configs=list(traces),
    )


def connect_limit(timeouts: Timeouts, url: str) -> float | None:
    """Seconds a new connection to `url` may take to open, or None for no limit."""
    limit = timeouts.connect
    if url.lower().startswith("https:") and limit:
        limit += timeouts.tlsHandshake
    return limit or None
