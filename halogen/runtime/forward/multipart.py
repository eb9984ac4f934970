"""Reading and replacing one text field of a multipart/form-data body, leaving every other
byte as the client sent it (audio uploads carry the model in a form field)."""

from __future__ import annotations

import re

_BOUNDARY = re.compile(r'boundary=(?:"([^"]+)"|([^;\s]+))', re.IGNORECASE)
_DISPOSITION = re.compile(rb"^content-disposition:(.*)$", re.IGNORECASE | re.MULTILINE)
_NAME = re.compile(rb'(?:^|;)\s*name="([^"]*)"', re.IGNORECASE)


def boundary(content_type: str) -> bytes | None:
    if not content_type.lower().startswith("multipart/form-data"):
        return None
    match = _BOUNDARY.search(content_type)
    if match is None:
        return None
    return (match.group(1) or match.group(2)).encode("latin-1")


Span = tuple[int, int]


def value_span(body: bytes, mark: bytes, name: str) -> Span | None:
    """Where the value of the first part named `name` starts and ends in `body`, a form whose
    boundary is `mark`."""
    delimiter = b"--" + mark
    wanted = name.encode()
    if body.startswith(delimiter):
        position = 0
    else:
        position = body.find(b"\r\n" + delimiter)
        if position < 0:
            return None
        position += 2
    while True:
        after = position + len(delimiter)
        if body[after : after + 2] != b"\r\n":
            return None  # the closing delimiter, or a malformed body
        head_end = body.find(b"\r\n\r\n", after + 2)
        if head_end < 0:
            return None
        following = body.find(b"\r\n" + delimiter, head_end + 4)
        if following < 0:
            return None
        headers = body[after + 2 : head_end]
        disposition = _DISPOSITION.search(headers)
        if disposition is not None:
            found = _NAME.search(disposition.group(1))
            if found is not None and found.group(1) == wanted:
                return head_end + 4, following
        position = following + 2


def value(body: bytes, span: Span | None) -> str | None:
    """The text at `span` (from `value_span`), or None when there is none."""
    return None if span is None else body[span[0] : span[1]].decode("utf-8", errors="replace")


def replace(body: bytes, span: Span | None, text: str) -> bytes:
    """`body` with the value at `span` (from `value_span`) replaced; unchanged without one."""
    return body if span is None else body[: span[0]] + text.encode() + body[span[1] :]


def _span(body: bytes, content_type: str, name: str) -> Span | None:
    mark = boundary(content_type)
    return None if mark is None else value_span(body, mark, name)


def field(body: bytes, content_type: str, name: str) -> str | None:
    """The value of form field `name`, or None when the body has no such field."""
    return value(body, _span(body, content_type, name))


def replace_field(body: bytes, content_type: str, name: str, text: str) -> bytes:
    """`body` with the value of form field `name` replaced (unchanged when there is none)."""
    return replace(body, _span(body, content_type, name), text)
