"""A GGUF file's header read from the Hugging Face Hub with HTTP range requests, not the file.

The header (key/values, then tensor infos) sits at the start of the file, and the Hub serves byte
ranges of every file. `header_length` walks the header's layout (ggml's docs/gguf.md: magic,
version, counts, key/values, tensor infos, padding to `general.alignment`) without decoding
values, to learn whether the bytes fetched so far hold all of it; `fetch` asks for more until they
do. What the header states is read by `halogen.llamacpp.gguf_header`, the same reader `halogen lock` uses
on a file on disk, from a sparse copy: the fetched head, then a hole up to the file's size.
"""

from __future__ import annotations

import struct
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

FIRST = 1 << 20
"""The first request's bytes: a model without a vocabulary has all of its header in them."""
LIMIT = 32 << 20
"""A header is at most this long: the vocabulary lives in it (5 to 10 MB for today's models)."""
DEFAULT_ALIGNMENT = 32
MAX_NESTING = 8
"""Arrays of arrays: no model nests them; a crafted header could, past Python's recursion limit."""

RangeReader = Callable[[int, int], bytes]
"""Bytes [start, end) of one file."""

# gguf.md's value types: their fixed sizes; 8 is a string, 9 an array.
_SIZES = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
_STRING, _ARRAY = 8, 9
_UNSIGNED = (0, 2, 4, 10)  # uint8, uint16, uint32, uint64


class HeaderError(ValueError):
    """The bytes are not a GGUF header this reader knows."""


class _Short(Exception):
    """The bytes end before the header does."""


class _Cursor:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.at = 0

    def take(self, n: int) -> bytes:
        end = self.at + n
        if end > len(self.data):
            raise _Short
        out = self.data[self.at : end]
        self.at = end
        return out

    def u32(self) -> int:
        value: int = struct.unpack("<I", self.take(4))[0]
        return value

    def u64(self) -> int:
        value: int = struct.unpack("<Q", self.take(8))[0]
        return value

    def string(self) -> bytes:
        return self.take(self.u64())

    def skip_value(self, kind: int, depth: int = 0) -> None:
        if kind == _STRING:
            self.take(self.u64())
        elif kind == _ARRAY:
            if depth >= MAX_NESTING:
                raise HeaderError(f"arrays nested deeper than {MAX_NESTING}")
            inner, count = self.u32(), self.u64()
            if inner in _SIZES:
                self.take(_SIZES[inner] * count)
            elif inner in (_STRING, _ARRAY):
                for _ in range(count):
                    self.skip_value(inner, depth + 1)
            else:
                raise HeaderError(f"unknown array type {inner}")
        elif kind in _SIZES:
            self.take(_SIZES[kind])
        else:
            raise HeaderError(f"unknown value type {kind}")


def _walk(data: bytes) -> tuple[int, dict[str, int]] | None:
    """Where the tensor data starts, and the header's whole-number key/values; None when `data`
    ends first. Raises HeaderError when it is no GGUF (v2 or v3)."""
    cursor = _Cursor(data)
    numbers: dict[str, int] = {}
    try:
        if cursor.take(4) != b"GGUF":
            raise HeaderError("not a GGUF file (no GGUF magic at its start)")
        version = cursor.u32()
        if version not in (2, 3):
            raise HeaderError(f"GGUF version {version} is not 2 or 3")
        tensors, kvs = cursor.u64(), cursor.u64()
        for _ in range(kvs):
            key = cursor.string().decode("utf-8", "replace")
            kind = cursor.u32()
            if kind in _UNSIGNED:
                numbers[key] = int.from_bytes(cursor.take(_SIZES[kind]), "little")
            else:
                cursor.skip_value(kind)
        for _ in range(tensors):
            cursor.string()
            dims = cursor.u32()
            cursor.take(8 * dims + 4 + 8)  # dimensions, type, offset
    except _Short:
        return None
    alignment = numbers.get("general.alignment", DEFAULT_ALIGNMENT)
    if alignment <= 0:
        raise HeaderError(f"general.alignment {alignment} is not positive")
    return cursor.at + (-cursor.at % alignment), numbers


def header_length(data: bytes) -> int | None:
    """Where the tensor data starts in the file whose first bytes are `data`, or None when
    `data` ends before the header does. Raises HeaderError when it is no GGUF (v2 or v3)."""
    walked = _walk(data)
    return walked[0] if walked is not None else None


def split_count(head: bytes) -> int:
    """The parts a whole header says its model has: `split.count`, which llama.cpp's gguf-split
    (tools/gguf-split/gguf-split.cpp at 0c1e570) writes in every part; 1 without it."""
    walked = _walk(head)
    if walked is None:
        raise HeaderError("the header is cut short")
    return walked[1].get("split.count", 1)


def fetch(read: RangeReader, size: int, limit: int = LIMIT) -> bytes:
    """The header of a file of `size` bytes, read with `read(start, end)` in growing steps;
    raises HeaderError when it is not a GGUF header, or longer than `limit`."""
    data = read(0, min(FIRST, size))
    while (end := header_length(data)) is None:
        if len(data) >= min(size, limit):
            raise HeaderError(
                "the file ends inside its GGUF header"
                if len(data) >= size
                else f"the GGUF header is longer than {limit >> 20} MiB"
            )
        data += read(len(data), min(2 * len(data), size, limit))
    return data[:end]


@contextmanager
def sparse_copy(head: bytes, size: int) -> Iterator[Path]:
    """A file of `size` bytes that starts with `head`, the rest a hole: what the GGUF reader
    reads, as it would the real file (it maps the file and looks only at the header)."""
    with tempfile.TemporaryDirectory(prefix="halogen-header-") as folder:
        path = Path(folder) / "head.gguf"
        with path.open("wb") as fh:
            fh.write(head)
            fh.truncate(max(size, len(head)))
        yield path
