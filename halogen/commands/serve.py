"""`halogen serve`: run a llama-swap config with the built-in proxy."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from halogen.runtime.listen import DEFAULT_LIMITS, DEFAULT_LISTEN, DEFAULT_MAX_BODY, Limits, parse_listen


def run(
    config_path: Path | str,
    listen: str = DEFAULT_LISTEN,
    *,
    max_body: int = DEFAULT_MAX_BODY,
    watch: bool = True,
    drain: float = 0.0,
    limits: Limits = DEFAULT_LIMITS,
    allow_origins: Sequence[str] = (),
    models_dir: Path | None = None,
    llama_server: Path | None = None,
) -> int:
    """Serve until SIGTERM/SIGINT; the exit status (1: invalid config or port in use, 2: bad
    `listen`). The runtime is imported here so the compiler runs without aiohttp installed."""
    from halogen.runtime.local import Local
    from halogen.runtime.server import serve

    try:
        host, port = parse_listen(listen)
    except ValueError as exc:
        print(f"halogen serve: {exc}", file=sys.stderr)
        return 2
    return serve(
        config_path,
        host=host,
        port=port,
        max_body=max_body,
        watch=watch,
        drain=drain,
        limits=limits,
        allow_origins=tuple(allow_origins),
        local=Local(models_dir, llama_server),
    )
