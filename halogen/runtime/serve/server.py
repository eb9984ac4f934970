"""`halogen serve` as a function: load the config, serve until SIGTERM, SIGINT or SIGHUP, stop
every child."""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import signal
import sqlite3
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypedDict, Unpack

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from halogen.diagnostics import Invalid, render
from halogen.llamaswap import io
from halogen.llamaswap.resolved import Resolved
from halogen.runtime.base.logs import Logs
from halogen.runtime.forward.context import Runtime
from halogen.runtime.process import reaper
from halogen.runtime.scheduling.swapper import Swapper
from halogen.runtime.serve import app
from halogen.runtime.serve.connections import GuardedSite
from halogen.runtime.serve.hosts import Hosts, default_names
from halogen.runtime.serve.listen import DEFAULT_HOST, DEFAULT_LIMITS, DEFAULT_MAX_BODY, DEFAULT_PORT, Limits
from halogen.runtime.serve.local import Local
from halogen.runtime.serve.reload import Watcher

# In-flight requests get this long to finish after the children are gone.
SHUTDOWN_GRACE = 2.0
# A terminal that closes sends SIGHUP: its default would end the proxy and leave the children
# running, holding their ports.
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


class Options(TypedDict, total=False):
    """`Server` settings that `serve` and `run` pass through; `health_check_timeout` (seconds)
    overrides the config's (tests use it)."""

    host: str
    port: int
    max_body: int
    health_check_timeout: float | None
    limits: Limits
    allow_origins: Sequence[str]
    allow_hosts: Sequence[str]
    adapt: Callable[[Resolved], Resolved] | None


def serve(
    config_path: str | Path,
    *,
    watch: bool = True,
    drain: float = 0.0,
    local: Local | None = None,
    **options: Unpack[Options],
) -> int:
    """Serve a llama-swap config; return the exit status (1 when the config is invalid or the
    port cannot be bound). `local`: the node's paths in it stand for these."""
    path = Path(config_path)
    try:
        resolved, warnings = io.load(path)
    except Invalid as exc:
        print(render(exc.diagnostics, "text"), file=sys.stderr)
        return 1
    if warnings:
        print(render(warnings, "text"), file=sys.stderr)
    if local:
        adapt = functools.partial(local.adapt, config_path=path)
        resolved = adapt(resolved)
        options["adapt"] = adapt
    return asyncio.run(run(resolved, config_path=path if watch else None, drain=drain, **options))


class _ClientErrors(logging.Filter):
    """A request aiohttp's parser refuses (no Host, two Host headers, bytes that are not HTTP)
    is answered 400 there, before any route, and logged with a traceback: for a client's bad
    input that is one line in the proxy's log. Anything else goes on to aiohttp's logger."""

    def __init__(self, logs: Logs) -> None:
        super().__init__()
        self._logs = logs

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, HttpProcessingError):
            self._logs.proxy(f"{record.getMessage()}: {exc.code} {exc.message.strip()}", "info")
            return False
        return True


def _http_logger(logs: Logs) -> logging.Logger:
    logger = logging.Logger("halogen.http")  # one per server; what it lets through goes on
    logger.parent = logging.getLogger("aiohttp.server")
    logger.addFilter(_ClientErrors(logs))
    return logger


class Server:
    """The runtime on a socket: routes, Swapper and (optionally) the config watcher."""

    def __init__(
        self,
        resolved: Resolved,
        *,
        host: str = DEFAULT_HOST,
        port: int = DEFAULT_PORT,
        max_body: int = DEFAULT_MAX_BODY,
        health_check_timeout: float | None = None,
        limits: Limits = DEFAULT_LIMITS,
        allow_origins: Sequence[str] = (),
        allow_hosts: Sequence[str] = (),
        config_path: Path | None = None,
        logs: Logs | None = None,
        adapt: Callable[[Resolved], Resolved] | None = None,
    ) -> None:
        self._adapt = adapt
        self.logs = logs or Logs.for_setting(resolved.log_to_stdout, resolved.log_level)
        self.logs.time_format = resolved.log_time_format
        self.logs.hide(resolved.secrets)
        self.swapper = Swapper(resolved, logs=self.logs, health_check_timeout=health_check_timeout)
        self.runtime = Runtime(self.swapper)
        self.host = host
        self.port = port
        self._max_body = max_body
        self.limits = limits
        self._allow_origins = tuple(allow_origins)
        self.hosts = Hosts.of([*default_names(host), *allow_hosts])
        self._config_path = config_path
        self._runner: web.AppRunner | None = None
        self._watcher: Watcher | None = None
        self._reaper: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    async def start(self) -> None:
        """Bind and serve (OSError when the port cannot be bound); preload in the background."""
        # handler_cancellation: a client that disconnects cancels its handler, which leaves the
        # queue or closes the upstream connection at once.
        runner = web.AppRunner(
            app.build(
                self.runtime,
                max_body=self._max_body,
                limits=self.limits,
                allow_origins=self._allow_origins,
                allow_hosts=self.hosts,
            ),
            handler_cancellation=True,
            access_log=None,
            logger=_http_logger(self.logs),
            shutdown_timeout=SHUTDOWN_GRACE,
            keepalive_timeout=self.limits.idle_timeout,
        )
        await runner.setup()
        self._runner = runner
        # A burst of connections up to the cap waits to be accepted instead of being dropped
        # by the kernel (aiohttp's backlog is 128).
        site = GuardedSite(runner, self.host, self.port, self.limits, backlog=self.limits.max_connections)
        await site.start()
        if self.port == 0:
            self.port = runner.addresses[0][1]
        resolved = self.swapper.resolved
        self.logs.proxy(f"listening on {self.url} with {len(resolved.models)} models")
        if resolved.preload:
            self.swapper.preload(resolved.preload)
        if self._config_path is not None:
            self._watcher = Watcher(self._config_path, self.swapper, self.logs, adapt=self._adapt)
            self._watcher.start()
        if os.getpid() == 1:
            self._reaper = asyncio.create_task(reaper.reap_forever())

    async def close(self, drain: float = 0.0, cut: asyncio.Event | None = None) -> None:
        """Stop every model (children reaped), then the HTTP server. With `drain`, first stop
        listening and give the requests that hold a model up to `drain` seconds (or until `cut`
        is set) to finish; requests that do not hold one yet get 503 at once. Closing twice
        does nothing the second time."""
        if self._watcher is not None:
            await self._watcher.close()
            self._watcher = None
        if drain > 0 and self._runner is not None:
            self.logs.close()  # a /logs/stream follower would hold the drain open
            for site in list(self._runner.sites):
                await site.stop()
            waiting = self.swapper.in_flight_total()
            self.logs.proxy(f"draining: {waiting} requests in flight, waiting up to {drain:g} s")
            if await self.swapper.drain(drain, cut):
                self.logs.proxy("drained: every request in flight has finished")
            else:
                left = self.swapper.in_flight_total()
                self.logs.proxy(f"drain cut short with {left} requests in flight: they get an error", "warn")
        if self._reaper is not None:
            self._reaper.cancel()
        await self.swapper.close()
        self.logs.close()
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()


async def run(
    resolved: Resolved, *, config_path: Path | None = None, drain: float = 0.0, **options: Unpack[Options]
) -> int:
    """Serve until SIGTERM, SIGINT or SIGHUP; every child is stopped and reaped before this returns.
    `drain`: seconds the requests in flight get to finish first (a second signal cuts it)."""
    try:
        server = Server(resolved, config_path=config_path, **options)
    except sqlite3.Error as exc:
        # validateStorePath (internal/config/load_posix.go, llama-swap) refuses the config so.
        print(f"halogen serve: store.path {resolved.store_path}: {exc}", file=sys.stderr)
        return 1
    stop = asyncio.Event()
    draining = 0.0  # no drain unless a signal asked for the stop
    loop = asyncio.get_running_loop()
    for sig in STOP_SIGNALS:
        loop.add_signal_handler(sig, stop.set)
    try:
        try:
            await server.start()
        except OSError as exc:
            where = f"{server.host}:{server.port}"
            print(f"halogen serve: cannot listen on {where}: {exc.strerror or exc}", file=sys.stderr)
            return 1
        await stop.wait()
        stop.clear()  # a second signal cuts the drain short
        server.logs.proxy("shutting down")
        draining = drain
    finally:
        await server.close(draining, cut=stop)
        for sig in STOP_SIGNALS:
            loop.remove_signal_handler(sig)
    return 0
