"""The `message_start` event llama-server sometimes leaves out of an Anthropic stream.

llama-server writes `message_start` only with the partial result of the first decoded token
(`to_json_anthropic` in tools/server/server-task.cpp, `first = (n_decoded == 1)`), and it holds
back a partial result that ends inside a UTF-8 sequence. So when the first token is part of an
emoji or another multi-byte character, the stream begins with `content_block_start`, and the
official clients refuse it ("Unexpected event order"): a reply that opens with an emoji breaks
every Anthropic client behind the proxy. The proxy puts a `message_start` in front of such a
stream. The counts that event would have carried are unknown here: its usage says 0.
"""

from __future__ import annotations

import json
import secrets

# The routes whose event streams this mends (llama-server's Anthropic Messages API, and its
# versionless twin that llama-swap offers, internal/server/server.go).
MESSAGES = ("/v1/messages", "/v/messages")
# The events that may only follow `message_start`; a stream opening with one of them lacks it.
# Anything else first (`message_start`, `ping`, `error`, an unknown event) passes unchanged.
_LATER_EVENTS = frozenset(
    {b"content_block_start", b"content_block_delta", b"content_block_stop", b"message_delta", b"message_stop"}
)
# How much of a stream is held back while its first event is incomplete; past it, it passes.
_MAX_HELD = 64 * 1024


def start_event(model: str) -> bytes:
    """A `message_start` for a reply from `model`, shaped as llama-server writes it."""
    data = {
        "type": "message_start",
        "message": {
            "id": f"msg_{secrets.token_hex(12)}",
            "type": "message",
            "role": "assistant",
            "content": [],
            "model": model,
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": 0, "output_tokens": 0},
        },
    }
    body = json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode()
    return b"event: message_start\ndata: " + body + b"\n\n"


def first_event_name(head: bytes) -> bytes | None:
    """The `event:` name of the first event in `head` (its lines up to the first blank one)."""
    for line in head.replace(b"\r\n", b"\n").split(b"\n"):
        if not line:
            return None
        field, _, value = line.partition(b":")
        if field == b"event":
            return value.removeprefix(b" ")
    return None


class MessageStart:
    """Sits in the chunk loop of one Anthropic event stream until its first event is whole:
    `feed` returns what to write now (the held bytes, with a `message_start` in front when it
    was missing), `flush` what is still held when the stream ends. Once decided, `done` is True
    and every later chunk can be written without it."""

    def __init__(self, model: str) -> None:
        self._model = model
        self._held = b""
        self.done = False

    def feed(self, chunk: bytes) -> bytes:
        self._held += chunk
        normal = self._held.replace(b"\r\n", b"\n")
        if b"\n\n" not in normal and len(self._held) <= _MAX_HELD:
            return b""
        return self.flush()

    def flush(self) -> bytes:
        held, self._held, self.done = self._held, b"", True
        if first_event_name(held) in _LATER_EVENTS:
            return start_event(self._model) + held
        return held
