"""Reload the config when its file changes: a ConfigMap mounted without subPath is replaced in
place by the kubelet (through a symlink swap, so the file's identity changes, not only its
bytes)."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import Callable
from pathlib import Path

from halogen.diagnostics import Invalid
from halogen.llamaswap import io
from halogen.llamaswap.resolved import Resolved
from halogen.runtime.base.logs import Logs
from halogen.runtime.scheduling.swapper import Swapper

POLL_SECONDS = 2.0


def fingerprint(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


class Watcher:
    """Polls the config file's content; a valid new config is handed to the Swapper, an invalid
    one (or any failure to load it) is logged and the running config kept."""

    def __init__(
        self,
        path: Path,
        swapper: Swapper,
        logs: Logs,
        interval: float = POLL_SECONDS,
        adapt: Callable[[Resolved], Resolved] | None = None,
    ) -> None:
        self._path = path
        self._adapt = adapt  # what `serve` does to each config it loads (local paths)
        self._swapper = swapper
        self._logs = logs
        self._interval = interval
        # The version serve loaded, not the file's now: a change made in between is still seen.
        self._seen = swapper.resolved.config_version or fingerprint(path)
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            try:
                await self.check()
            except Exception as exc:  # a watcher that dies ignores every later edit, silently
                self._logs.proxy(f"config reload failed: {type(exc).__name__}: {exc}", "error")

    async def check(self) -> bool:
        """Reload if the file changed since the last look; True when a new config was adopted."""
        current = fingerprint(self._path)
        if current is None or current == self._seen:
            return False
        self._seen = current
        try:
            resolved, warnings = io.load(self._path)
        except Invalid as exc:
            self._logs.proxy(
                f"config {self._path} changed but is invalid; keeping the running config", "warn"
            )
            for diagnostic in exc.diagnostics:
                self._logs.proxy(diagnostic.text(), "warn")
            return False
        except Exception as exc:  # a bug in the loader: the running config is still good
            self._logs.proxy(
                f"config {self._path} changed but could not be read ({type(exc).__name__}: {exc}); "
                "keeping the running config",
                "error",
            )
            return False
        if self._adapt is not None:
            resolved = self._adapt(resolved)
        self._logs.hide(resolved.secrets)
        for diagnostic in warnings:
            self._logs.proxy(diagnostic.text(), "warn")
        self._logs.level = resolved.log_level
        self._logs.time_format = resolved.log_time_format
        # What was loaded, which a write between the two reads may have made newer than `current`.
        self._seen = resolved.config_version or current
        changed = self._swapper.reload(resolved)
        self._logs.proxy(f"config {self._path} reloaded; restarting {sorted(changed) or 'no models'}")
        return True

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
