"""Recent output of the proxy and of every upstream, kept in memory for `/logs` and errors."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections import deque
from collections.abc import Mapping
from datetime import datetime
from typing import Literal, TextIO

Level = Literal["debug", "info", "warn", "error"]
_RANK: dict[str, int] = {"debug": 0, "info": 1, "warn": 2, "error": 3}


# A line longer than this is cut (a model may print a whole prompt on one line).
MAX_LINE = 8 * 1024
# The history of the proxy and its models keeps at most this many characters.
HISTORY_CHARS = 2 * 1024 * 1024


def cut(line: str, limit: int = MAX_LINE) -> str:
    """`line`, or its start and how much was left out, in at most `limit` characters."""
    if len(line) <= limit:
        return line
    kept = limit - 40
    return f"{line[:kept]}... ({len(line) - kept} more characters)"


class Ring:
    """The last `size` lines written to it, at most `chars` characters in all (each line cut
    to `MAX_LINE`): bounded in memory whatever is written. Each line keeps the source it came
    from (a model id; "" for the proxy's own)."""

    def __init__(self, size: int, chars: int = HISTORY_CHARS) -> None:
        self._lines: deque[tuple[str, str]] = deque()
        self._size = size
        self._limit = chars
        self._chars = 0

    def add(self, line: str, source: str = "") -> None:
        line = cut(line)
        self._lines.append((source, line))
        self._chars += len(line)
        while len(self._lines) > self._size or (self._chars > self._limit and len(self._lines) > 1):
            self._chars -= len(self._lines.popleft()[1])

    def tail(self, count: int) -> list[str]:
        if count <= 0:
            return []
        return self.lines()[-count:]

    def lines(self, wanted: str | None = None) -> list[str]:
        """Every line, or those from the sources `wanted` names (`from_source`)."""
        return [line for source, line in self._lines if from_source(wanted, source)]


# Which lines a log view shows (getLogger in internal/server/log.go, llama-swap): every line
# (None), the proxy's own, every model's output, or one model's.
PROXY_LINES = "proxy"
UPSTREAM_LINES = "upstream"


def from_source(wanted: str | None, source: str) -> bool:
    if wanted is None:
        return True
    if wanted == PROXY_LINES:
        return source == ""
    if wanted == UPSTREAM_LINES:
        return source != ""
    return source == wanted


# llama-swap's logTimeFormat names Go's time layouts (llama-swap.go, logTimeFormats); the same
# layouts in strftime, the fractional ones completed by `stamp`.
_LAYOUTS = {
    "ansic": "%a %b %e %H:%M:%S %Y",
    "unixdate": "%a %b %e %H:%M:%S %Z %Y",
    "rubydate": "%a %b %d %H:%M:%S %z %Y",
    "rfc822": "%d %b %y %H:%M %Z",
    "rfc822z": "%d %b %y %H:%M %z",
    "rfc850": "%A, %d-%b-%y %H:%M:%S %Z",
    "rfc1123": "%a, %d %b %Y %H:%M:%S %Z",
    "rfc1123z": "%a, %d %b %Y %H:%M:%S %z",
    "stamp": "%b %e %H:%M:%S",
    "stampmilli": "%b %e %H:%M:%S",
    "stampmicro": "%b %e %H:%M:%S",
    "stampnano": "%b %e %H:%M:%S",
}


def _offset(moment: datetime) -> str:
    """Go's `Z07:00`: `Z` at UTC, else `+hh:mm`."""
    offset = moment.strftime("%z")
    return "Z" if offset in ("+0000", "") else f"{offset[:3]}:{offset[3:]}"


def stamp(time_format: str, moment: datetime) -> str:
    """`moment` in the Go layout llama-swap's `logTimeFormat` names ("" = no time stamp)."""
    if not time_format:
        return ""
    if time_format == "kitchen":
        return f"{moment.hour % 12 or 12}:{moment:%M%p}"
    if time_format in ("rfc3339", "rfc3339nano"):
        text = f"{moment:%Y-%m-%dT%H:%M:%S}"
        if time_format == "rfc3339nano" and moment.microsecond:
            text += f".{moment.microsecond:06d}".rstrip("0")
        return text + _offset(moment)
    text = moment.strftime(_LAYOUTS[time_format])
    digits = {"stampmilli": 3, "stampmicro": 6, "stampnano": 9}.get(time_format)
    if digits is not None:
        text += "." + f"{moment.microsecond:06d}000"[:digits]
    return text


class Logs:
    """One history for the proxy's own lines and every upstream's output, with live followers.

    `echo_proxy` / `echo_upstream` mirror llama-swap's `logToStdout`; the proxy's lines below
    `level` (llama-swap's `logLevel`) are dropped. The access log (`access`) goes to stdout
    only: a line per request would push the models' output out of the history.
    """

    def __init__(
        self,
        history: int = 2000,
        *,
        echo_proxy: bool = True,
        echo_upstream: bool = False,
        out: TextIO | None = None,
        level: str = "info",
    ) -> None:
        self._history = Ring(history)
        self._followers: dict[asyncio.Queue[str | None], str | None] = {}
        self._echo_proxy = echo_proxy
        self._echo_upstream = echo_upstream
        self._out = out
        self._closed = False
        self._secrets: dict[str, str] = {}
        self.level = level
        self.time_format = ""  # logTimeFormat: each line starts with the time in this layout

    @property
    def level(self) -> str:
        return self._level

    @level.setter
    def level(self, level: str) -> None:
        self._level = level
        self._threshold = _RANK[level]

    @classmethod
    def for_setting(cls, log_to_stdout: str, level: str = "info", history: int = 2000) -> Logs:
        return cls(
            history,
            echo_proxy=log_to_stdout in ("proxy", "both"),
            echo_upstream=log_to_stdout in ("upstream", "both"),
            level=level,
        )

    def hide(self, secrets: Mapping[str, str]) -> None:
        """Mask these values (value -> the variable it came from) in every line from now on.
        Values are only ever added: a process started under an older config may still print
        its own."""
        self._secrets.update(secrets)
        # Longest first, so a value that holds a shorter one is masked whole.
        self._secrets = dict(sorted(self._secrets.items(), key=lambda item: -len(item[0])))

    def redact(self, text: str) -> str:
        """`text` with every secret value replaced by `${env.NAME}`, the reference it came from."""
        for value, name in self._secrets.items():
            if value in text:
                text = text.replace(value, f"${{env.{name}}}")
        return text

    def proxy(self, message: str, level: Level = "info") -> None:
        if _RANK[level] >= self._threshold:
            # The proxy's own lines carry the time, a model's output as it printed it
            # (formatMessage in internal/logmon/logging.go, llama-swap).
            self._add(self._stamped(f"[halogen] {message}"), self._echo_proxy)

    def echoes(self, level: Level) -> bool:
        """Whether an access line at `level` would be printed (so it need not be made)."""
        return self._echo_proxy and _RANK[level] >= self._threshold

    def access(self, line: str, level: Level = "info") -> None:
        if self.echoes(level):
            print(
                self._stamped(cut(self.redact(f"[halogen] {line}"))), file=self._out or sys.stdout, flush=True
            )

    def upstream(self, model_id: str, line: str) -> None:
        self._add(f"[{model_id}] {line}", self._echo_upstream, model_id)

    def history(self, wanted: str | None = None) -> list[str]:
        """The lines kept, all of them or those from the sources `wanted` names (`from_source`)."""
        return self._history.lines(wanted)

    def _stamped(self, line: str) -> str:
        if not self.time_format:
            return line
        return f"{stamp(self.time_format, datetime.now().astimezone())} {line}"

    def _add(self, line: str, echo: bool, source: str = "") -> None:
        line = cut(self.redact(line))
        self._history.add(line, source)
        if echo:
            out = self._out or sys.stdout
            print(line, file=out, flush=True)
        for queue, wanted in list(self._followers.items()):
            if from_source(wanted, source):
                # A follower that cannot keep up loses lines instead of holding memory.
                with contextlib.suppress(asyncio.QueueFull):
                    queue.put_nowait(line)

    def follow(self, wanted: str | None = None) -> Follower:
        """Every line added from now on (the subscription starts at this call), or those from
        the sources `wanted` names (`from_source`), until `close`."""
        follower = Follower(self._followers)
        if self._closed:
            follower.queue.put_nowait(None)
        else:
            self._followers[follower.queue] = wanted
        return follower

    def close(self) -> None:
        self._closed = True
        for queue in list(self._followers):
            try:
                queue.put_nowait(None)
            except asyncio.QueueFull:
                queue.get_nowait()
                queue.put_nowait(None)


class Follower:
    """A live view of the log; stops when the log closes or `close` is called."""

    def __init__(self, followers: dict[asyncio.Queue[str | None], str | None]) -> None:
        self.queue: asyncio.Queue[str | None] = asyncio.Queue(maxsize=1000)
        self._followers = followers

    def __aiter__(self) -> Follower:
        return self

    async def __anext__(self) -> str:
        line = await self.queue.get()
        if line is None:
            self.close()
            raise StopAsyncIteration
        return line

    def close(self) -> None:
        self._followers.pop(self.queue, None)
