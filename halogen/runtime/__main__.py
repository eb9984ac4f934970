"""`python -m halogen.runtime CONFIG`: the runtime without the rest of the CLI."""

from __future__ import annotations

import argparse
import os
import sys

from halogen.runtime.listen import DEFAULT_LIMITS, DEFAULT_LISTEN, DEFAULT_MAX_BODY, Limits, parse_listen
from halogen.runtime.server import serve


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m halogen.runtime", description="Serve a llama-swap config."
    )
    parser.add_argument("config", help="llama-swap config.yaml")
    parser.add_argument("--listen", default=DEFAULT_LISTEN, help=f"host:port to bind [{DEFAULT_LISTEN}]")
    parser.add_argument(
        "--max-body-bytes", type=int, default=DEFAULT_MAX_BODY, help="largest request body accepted"
    )
    parser.add_argument(
        "--no-watch", action="store_true", help="do not reload the config when the file changes"
    )
    parser.add_argument(
        "--drain",
        type=float,
        default=0.0,
        help="on SIGTERM/SIGINT, seconds the requests in flight get to finish before the models stop",
    )
    parser.add_argument(
        "--health-check-timeout",
        type=float,
        default=None,
        help="seconds to wait for a started model, overriding the config (llama-swap's floor of 15 s does not apply)",
    )
    defaults = DEFAULT_LIMITS
    parser.add_argument(
        "--header-timeout", type=float, default=defaults.header_timeout, help="seconds to send a header"
    )
    parser.add_argument(
        "--idle-timeout",
        type=float,
        default=defaults.idle_timeout,
        help="seconds a kept-alive connection may idle",
    )
    parser.add_argument(
        "--body-timeout", type=float, default=defaults.body_timeout, help="seconds to send a body"
    )
    parser.add_argument(
        "--max-connections", type=int, default=defaults.max_connections, help="open connections at most"
    )
    parser.add_argument(
        "--allow-origin",
        action="append",
        default=os.environ.get("HALOGEN_ALLOW_ORIGINS", "").split(),
        metavar="ORIGIN",
        help="a web origin whose pages may call the API from a browser (repeatable)",
    )
    args = parser.parse_args(argv)
    try:
        host, port = parse_listen(args.listen)
    except ValueError as exc:
        parser.error(str(exc))
    return serve(
        args.config,
        host=host,
        port=port,
        max_body=args.max_body_bytes,
        health_check_timeout=args.health_check_timeout,
        limits=Limits(args.header_timeout, args.idle_timeout, args.body_timeout, args.max_connections),
        allow_origins=tuple(args.allow_origin),
        watch=not args.no_watch,
        drain=max(0.0, args.drain),
    )


if __name__ == "__main__":
    sys.exit(main())
