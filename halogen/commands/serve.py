"""`halogen serve`: run a llama-swap config with the built-in proxy."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from halogen.image import CONFIG_FILE
from halogen.runtime.serve.listen import (
    DEFAULT_LIMITS,
    DEFAULT_LISTEN,
    DEFAULT_MAX_BODY,
    Limits,
    parse_listen,
)


def config_of(given: Path | str | None) -> Path:
    """The config to serve: the one given; else out/config.yaml here, or in the site (the
    folder holding halogen.yaml) found upward from here, as `halogen build` wrote it."""
    from halogen.commands.sites import OUT_DIR, site_root

    if given is not None:
        return Path(given)
    here = Path(OUT_DIR, CONFIG_FILE)
    if here.is_file():
        return here
    root = site_root(Path.cwd())
    found = root / OUT_DIR / CONFIG_FILE if root is not None else here
    nodes = sorted(found.parent.glob(f"nodes/*/{CONFIG_FILE}"))
    if not found.is_file() and nodes:
        # A site with `nodes:` has one config per node (halogen.compiler.render.nodes).
        import click

        raise click.UsageError(
            f"{found.parent} holds a config per node: serve one with "
            f"--config {found.parent / 'nodes' / '<node>' / CONFIG_FILE} "
            f"(nodes: {', '.join(n.parent.name for n in nodes)})"
        )
    return found


def run(
    config_path: Path | str | None,
    listen: str = DEFAULT_LISTEN,
    *,
    max_body: int = DEFAULT_MAX_BODY,
    watch: bool = True,
    drain: float = 0.0,
    limits: Limits = DEFAULT_LIMITS,
    allow_origins: Sequence[str] = (),
    allow_hosts: Sequence[str] = (),
    models_dir: Path | None = None,
    llama_server: Path | None = None,
) -> int:
    """Serve until SIGTERM, SIGINT or SIGHUP; the exit status (1: invalid config or port in use, 2: bad
    `listen` or `--allow-host`). The runtime is imported here so the compiler runs without aiohttp installed."""
    from halogen.runtime.serve.hosts import allowed_value
    from halogen.runtime.serve.local import Local
    from halogen.runtime.serve.server import serve

    try:
        host, port = parse_listen(listen)
        for value in allow_hosts:
            allowed_value(value)
    except ValueError as exc:
        print(f"halogen serve: {exc}", file=sys.stderr)
        return 2
    return serve(
        config_of(config_path),
        host=host,
        port=port,
        max_body=max_body,
        watch=watch,
        drain=drain,
        limits=limits,
        allow_origins=tuple(allow_origins),
        allow_hosts=tuple(allow_hosts),
        local=Local(models_dir, llama_server),
    )
