"""`halogen serve`: run a llama-swap config with the built-in proxy."""

from __future__ import annotations

import sys
from pathlib import Path

DEFAULT_LISTEN = "127.0.0.1:8080"
DEFAULT_MAX_BODY = 32 * 1024 * 1024


def run(
    config_path: Path | str,
    listen: str = DEFAULT_LISTEN,
    *,
    max_body: int = DEFAULT_MAX_BODY,
    watch: bool = True,
    health_check_timeout: float | None = None,
    drain: float = 0.0,
) -> int:
    """Serve until SIGTERM/SIGINT; the exit status (1: invalid config or port in use, 2: bad
    `listen`). The runtime is imported here so the compiler runs without aiohttp installed."""
    from halogen.runtime.listen import parse_listen
    from halogen.runtime.server import serve

    try:
        host, port = parse_listen(listen)
    except ValueError as exc:
        print(f"halogen serve: {exc}", file=sys.stderr)
        return 2
    return serve(
        config_path,
        host,
        port,
        max_body=max_body,
        health_check_timeout=health_check_timeout,
        watch=watch,
        drain=drain,
    )
