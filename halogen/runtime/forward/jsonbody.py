"""A JSON request body read without building it: where its top-level members are, how deep it
nests and how many elements it holds, found by a walk over the bytes that gives the event loop
back after every slice of work, so no body, however wide, holds the loop for long.

llama-swap reads a request's model the same way, with gjson on the raw bytes, and rewrites it
with sjson, leaving every other byte as sent (`gjson.GetBytes(bodyBytes, "model")` in
extractContext and `sjson.SetBytes(body, "model", …)` in ReplaceRequestModel,
internal/swaputil/http.go, llama-swap 0bdb3720). As gjson does, the first of duplicate keys
counts and a key may be written with escapes. A full parse (`parse`) is left to the routes that
translate a body, and comes after a walk that refuses a body past the limits, since json.loads
runs in C without ever releasing the interpreter, on the loop or in a thread alike.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Collection, Generator
from dataclasses import dataclass, field
from typing import Any, TypeVar

from halogen.runtime.base.errors import BadRequest, TooLarge

T = TypeVar("T")
# A walk that pauses (yields) after each slice of work and returns what it found.
Walk = Generator[None, None, T]

# Deeper JSON is refused: Python's parser, comparisons and encoder recurse once per level, and a
# body nested close to the interpreter's recursion limit would fail in whichever comes first.
MAX_DEPTH = 256
# A body that is parsed may hold at most this many elements (containers and separators).
# json.loads, a translation and json.dumps each take 0.1-1 us an element without letting go of
# the event loop (C holds the interpreter, a thread would not help), so a parse with what
# follows stays within some milliseconds. A long chat holds a few thousand; Ollama's `context`
# (ignored by the translation) of a 16k window holds 16k.
MAX_ELEMENTS = 1 << 14
# Bytes walked between two turns of the event loop: a regular expression in C crosses 20-50
# bytes a microsecond (memchr far more), so a slice takes well under a millisecond.
SLICE = 16 * 1024

_WHITESPACE = re.compile(rb"[ \t\r\n]*+")
# A number or a literal, up to what ends a value.
_SCALAR = re.compile(rb"[^ \t\r\n,\]}]*+")
# The inside of a string from its first byte, up to its closing quote.
_IN_STRING = re.compile(rb'[^"\\]*+(?:\\.[^"\\]*+)*+', re.DOTALL)
_STRING = rb'"[^"\\]*+(?:\\.[^"\\]*+)*+"'
# Everything that is not a bracket and not a string, in a nested value (separators included).
_FLAT = re.compile(rb'[^"\[\]{},]*+')
# Balanced content nested at most _RUN_DEPTH deep: skipped in C when the depth cannot matter.
# Bracket kinds are not paired ("[}" passes): the walk reads structure, json.loads validates.
_RUN_DEPTH = 8


def _balanced_run(depth: int) -> re.Pattern[bytes]:
    atom = rb'(?:[^"\[\]{}]++|' + _STRING + rb")"
    item = atom
    for _ in range(depth):
        item = rb"(?:" + atom + rb"|[\[{]" + item + rb"*+[\]}])"
    return re.compile(item + rb"*+", re.DOTALL)


_RUN = _balanced_run(_RUN_DEPTH)
_BACKSLASH = 0x5C
_QUOTE = 0x22


class Unreadable(ValueError):
    """A body that is not a JSON object, or not JSON."""


class TooDeep(ValueError):
    pass


class TooMany(ValueError):
    pass


@dataclass
class Survey:
    """What a walk found: the spans of the wanted top-level members' values (the first of each
    name), the depth reached, and the elements counted (when counting)."""

    members: dict[str, tuple[int, int]] = field(default_factory=dict)
    depth: int = 1
    elements: int = 1


def run(walk: Walk[T]) -> T:
    """A walk carried out at once (a small body, or a test)."""
    try:
        while True:
            next(walk)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]


async def run_sliced(walk: Walk[T]) -> T:
    """A walk carried out a slice at a time, the event loop free between slices."""
    try:
        while True:
            next(walk)
            await asyncio.sleep(0)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]


def survey(
    body: bytes,
    wanted: Collection[str] = (),
    *,
    max_depth: int = MAX_DEPTH,
    max_elements: int | None = None,
) -> Walk[Survey]:
    """Walk a body that must be one JSON object: `Unreadable`, `TooDeep` past `max_depth`, and
    with `max_elements`, `TooMany` past it (the walk stops there). Elements are counted from
    above: brackets and commas inside strings may count too."""
    return _Walker(body, wanted, max_depth, max_elements).top()


def member_text(body: bytes, span: tuple[int, int], limit: int = 1 << 20) -> Any:
    """A member's value when it is a string (the first `limit` bytes of a longer one, read
    loosely: such a name is shown, never matched); None for any other value."""
    start, end = span
    if body[start] != _QUOTE:
        return None
    if end - start > limit:
        return body[start + 1 : start + 1 + limit].decode("utf-8", "replace")
    try:
        return json.loads(body[start:end])
    except ValueError:
        return None


def replaced(body: bytes, span: tuple[int, int], value: Any) -> bytes:
    """`body` with the value at `span` replaced by `value` as JSON, every other byte as sent (as
    sjson.SetBytes does for a key that is there)."""
    start, end = span
    encoded = json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()
    return body[:start] + encoded + body[end:]


class _Walker:
    def __init__(self, body: bytes, wanted: Collection[str], max_depth: int, max_elements: int | None):
        self.body = body
        self.n = len(body)
        self.wanted = frozenset(wanted)
        self.longest = max((len(w) for w in self.wanted), default=0)
        self.max_depth = max_depth
        self.max_elements = max_elements
        self.found = Survey()
        self.spent = 0  # bytes walked since the last pause

    def _pause(self, walked: int) -> bool:
        self.spent += walked + 16
        if self.spent < SLICE:
            return False
        self.spent = 0
        return True

    def _repeat(self, pattern: re.Pattern[bytes], pos: int) -> Walk[int]:
        """Where a run of a repeated character class starting at `pos` ends, a slice at a time."""
        while True:
            limit = min(self.n, pos + SLICE)
            end = pattern.match(self.body, pos, limit).end()  # type: ignore[union-attr]
            if self._pause(end - pos):
                yield
            if end < limit or limit == self.n:
                return end
            pos = end

    def _expect(self, pos: int, byte: bytes) -> None:
        if pos >= self.n or self.body[pos] != byte[0]:
            raise Unreadable("the request body is not valid JSON")

    def top(self) -> Walk[Survey]:
        body = self.body
        pos = yield from self._repeat(_WHITESPACE, 0)
        if pos >= self.n or body[pos] != ord("{"):
            if pos < self.n and body[pos] in b'["-0123456789tfn':
                raise Unreadable("the request body must be a JSON object")
            raise Unreadable("the request body is not valid JSON")
        pos = yield from self._repeat(_WHITESPACE, pos + 1)
        if pos < self.n and body[pos] == ord("}"):
            pos += 1
        else:
            while True:
                self._expect(pos, b'"')
                key_end = yield from self._string(pos)
                name = self._key(pos, key_end)
                pos = yield from self._repeat(_WHITESPACE, key_end)
                self._expect(pos, b":")
                start = yield from self._repeat(_WHITESPACE, pos + 1)
                end = yield from self._value(start)
                if name is not None and name not in self.found.members:
                    self.found.members[name] = (start, end)
                pos = yield from self._repeat(_WHITESPACE, end)
                if pos < self.n and body[pos] == ord(","):
                    self._count()
                    pos = yield from self._repeat(_WHITESPACE, pos + 1)
                    continue
                self._expect(pos, b"}")
                pos += 1
                break
        pos = yield from self._repeat(_WHITESPACE, pos)
        if pos != self.n:
            raise Unreadable("the request body is not valid JSON")
        return self.found

    def _key(self, start: int, end: int) -> str | None:
        """The key at `start:end` when it may be one of the wanted ones (read as gjson does,
        escapes and all)."""
        raw = self.body[start:end]
        if not self.wanted or len(raw) > 6 * self.longest + 2:
            return None
        try:
            name = json.loads(raw)
        except ValueError:
            return None
        return name if name in self.wanted else None

    def _count(self, elements: int = 1) -> None:
        if self.max_elements is None:
            return
        self.found.elements += elements
        if self.found.elements > self.max_elements:
            raise TooMany(f"the request body holds more than {self.max_elements} elements")

    def _deeper(self, depth: int) -> None:
        if depth > self.found.depth:
            self.found.depth = depth
            if depth > self.max_depth:
                raise TooDeep(f"the request body nests deeper than {self.max_depth} levels")

    def _value(self, pos: int) -> Walk[int]:
        """Where the value at `pos` (inside the top-level object) ends."""
        if pos >= self.n:
            raise Unreadable("the request body is not valid JSON")
        lead = self.body[pos]
        if lead == _QUOTE:
            return (yield from self._string(pos))
        if lead in b"[{":
            return (yield from self._nested(pos))
        end = yield from self._repeat(_SCALAR, pos)
        if end == pos:
            raise Unreadable("the request body is not valid JSON")
        return end

    def _string(self, pos: int) -> Walk[int]:
        """Where the string whose opening quote is at `pos` ends (after its closing quote).
        Its closing quote is found with memchr; a string with escaped quotes is read on by a
        regular expression, a slice at a time."""
        body = self.body
        start = pos + 1
        quote = body.find(b'"', start)
        if quote < 0:
            raise Unreadable("the request body is not valid JSON: a string never ends")
        if self._pause(quote - start):
            yield
        if body[quote - 1] != _BACKSLASH or quote == start:
            return quote + 1
        pos = start
        while True:
            limit = min(self.n, pos + SLICE)
            end = _IN_STRING.match(body, pos, limit).end()  # type: ignore[union-attr]
            if self._pause(end - pos):
                yield
            if end < self.n and body[end] == _QUOTE:
                return end + 1
            if end >= self.n or (end == pos and end + 1 >= self.n):
                raise Unreadable("the request body is not valid JSON: a string never ends")
            # The slice ended, maybe between a backslash and the byte it escapes.
            pos = end if end > pos else end + 2

    def _nested(self, pos: int) -> Walk[int]:
        """Where the array or object opening at `pos` (at depth 2) ends, its depth checked and,
        when counting, its elements."""
        body = self.body
        depth = 1
        counting = self.max_elements is not None
        while True:
            lead = body[pos]
            if lead == _QUOTE:
                pos = yield from self._string(pos)
            elif lead in b"[{":
                depth += 1
                self._deeper(depth)
                self._count()
                pos += 1
            elif lead in b"]}":
                depth -= 1
                pos += 1
                if depth == 1:
                    return pos
            elif lead == ord(","):
                self._count()
                pos += 1
            if depth + _RUN_DEPTH <= self.max_depth:
                end = _RUN.match(body, pos, min(self.n, pos + SLICE)).end()  # type: ignore[union-attr]
                if counting and end > pos:
                    # Counted in C, brackets and commas inside strings too: a bound from above.
                    self._count(sum(body.count(mark, pos, end) for mark in (b",", b"[", b"{")))
            else:
                end = _FLAT.match(body, pos, min(self.n, pos + SLICE)).end()  # type: ignore[union-attr]
            if self._pause(end - pos):
                yield
            pos = end
            if pos >= self.n:
                raise Unreadable("the request body is not valid JSON: it ends inside a value")


def parse(body: bytes) -> dict[str, Any]:
    """A body that must be a JSON object, parsed after a walk within the limits: `BadRequest`
    (not JSON, not an object, too deep) or `TooLarge` (too many elements) otherwise."""
    return _loaded(body, run(_bounded(body)))


async def parse_sliced(body: bytes) -> dict[str, Any]:
    """`parse`, its walk a slice at a time (the parse itself is bounded by the walk's limits)."""
    return _loaded(body, await run_sliced(_bounded(body)))


def _bounded(body: bytes) -> Walk[Survey]:
    try:
        return (yield from survey(body, max_elements=MAX_ELEMENTS))
    except (Unreadable, TooDeep) as exc:
        raise BadRequest(str(exc)) from None
    except TooMany as exc:
        raise TooLarge(str(exc)) from None


def _loaded(body: bytes, _: Survey) -> dict[str, Any]:
    try:
        data = json.loads(body)
    except RecursionError:  # pragma: no cover - the walk refuses such depths first
        raise BadRequest(f"the request body nests deeper than {MAX_DEPTH} levels") from None
    except (ValueError, UnicodeDecodeError):
        raise BadRequest("the request body is not valid JSON") from None
    if not isinstance(data, dict):
        raise BadRequest("the request body must be a JSON object")
    return data
