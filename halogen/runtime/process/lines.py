"""Complete lines out of a byte stream that arrives in arbitrary pieces."""

from __future__ import annotations


class LineSplitter:
    """Bytes in, complete lines out; a line split across two reads is carried to the next."""

    def __init__(self, max_line: int = 64 * 1024) -> None:
        self._partial = b""
        self._max_line = max_line

    def feed(self, data: bytes) -> list[bytes]:
        data = self._partial + data
        *lines, self._partial = data.split(b"\n")
        if len(self._partial) > self._max_line:
            # A runaway line is cut rather than held forever.
            lines.append(self._partial)
            self._partial = b""
        return [line.rstrip(b"\r") for line in lines]

    def close(self) -> list[bytes]:
        rest, self._partial = self._partial.rstrip(b"\r"), b""
        return [rest] if rest else []
