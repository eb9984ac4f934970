"""A one-line progress bar on stderr, drawn only when stderr is a terminal: nothing when it
is piped or captured, so CI logs hold the report alone."""

from __future__ import annotations

import sys
from typing import TextIO

from halogen.smoke.report import printable

WIDTH = 24


class Bar:
    def __init__(self, total: int, stream: TextIO | None = None) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.total = max(total, 1)
        self.done = 0
        self.shown = self.stream.isatty()

    def step(self, what: str) -> None:
        """Say what runs now."""
        self._draw(what)

    def advance(self, what: str = "") -> None:
        """One more model done."""
        self.done += 1
        self._draw(what)

    def _draw(self, what: str) -> None:
        if not self.shown:
            return
        filled = WIDTH * self.done // self.total
        line = f"[{'#' * filled}{'.' * (WIDTH - filled)}] {self.done}/{self.total} models  {printable(what)[:60]}"
        self.stream.write("\r\x1b[2K" + line)
        self.stream.flush()

    def close(self) -> None:
        if self.shown:
            self.stream.write("\r\x1b[2K")
            self.stream.flush()
