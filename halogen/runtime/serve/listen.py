"""`--listen` values: `host:port`, `[v6]:port`, `:port` or `port`; and the defaults every entry
point of `halogen serve` shares. Standard library only: the CLI imports it without aiohttp."""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080
DEFAULT_LISTEN = f"{DEFAULT_HOST}:{DEFAULT_PORT}"
# The largest request body accepted (audio uploads included); larger ones get 413.
DEFAULT_MAX_BODY = 32 * 1024 * 1024


@dataclass(frozen=True)
class Limits:
    """Sized for a slow client on the LAN (a phone on weak Wi-Fi) and for long streams.

    - `header_timeout`: from a connection's opening, or from the first byte of a later request,
      until the request's header is complete. A header is a few kB: seconds even at 2G speed;
      a browser's pre-opened connection that stays silent is closed after it.
    - `idle_timeout`: an open connection between requests. Longer than the idle time of the
      usual client pools (httpx 5 s, aiohttp 15 s, Go 90 s is the exception), so a client rarely
      sends on a connection this side is closing.
    - `body_timeout`: reading a whole request body: 32 MiB (the default body limit) needs
      300 kB/s, a slow Wi-Fi link.
    - `max_connections`: open client connections; more get 503 and are closed at once. A
      household opens tens; each costs a file descriptor and a little memory.
    """

    header_timeout: float = 20.0
    idle_timeout: float = 75.0
    body_timeout: float = 120.0
    max_connections: int = 512


DEFAULT_LIMITS = Limits()


def parse_listen(value: str) -> tuple[str, int]:
    host, sep, port_text = value.rpartition(":")
    if not sep:
        host, port_text = "", value
    host = host.strip("[]") or DEFAULT_HOST
    try:
        port = int(port_text)
    except ValueError:
        raise ValueError(f"--listen {value!r}: the port must be a number") from None
    if not 0 <= port <= 65535:
        raise ValueError(f"--listen {value!r}: the port must be 0-65535")
    return host, port
