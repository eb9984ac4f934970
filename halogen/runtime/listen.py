"""`--listen` values: `host:port`, `[v6]:port`, `:port` or `port`; and the defaults every entry
point of `halogen serve` shares. Standard library only: the CLI imports it without aiohttp."""

from __future__ import annotations

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080
DEFAULT_LISTEN = f"{DEFAULT_HOST}:{DEFAULT_PORT}"
# The largest request body accepted (audio uploads included); larger ones get 413.
DEFAULT_MAX_BODY = 32 * 1024 * 1024


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
