"""The `message_start` the proxy puts in front of an Anthropic stream that llama-server began
without one (its first token was part of a multi-byte character: `to_json_anthropic` in
tools/server/server-task.cpp writes the event only with the first decoded token)."""

from __future__ import annotations

import itertools
import json

from hypothesis import given
from hypothesis import strategies as st

from halogen.runtime.forward.message_start import MessageStart, first_event_name

# What llama-server sent for a reply that opened with an emoji (the bytes, shortened).
HEADLESS = (
    b"event: content_block_start\n"
    b'data: {"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}\n\n'
    b"event: content_block_delta\n"
    b'data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"\xf0\x9f\x8c\x9f"}}\n\n'
    b"event: message_delta\n"
    b'data: {"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"output_tokens":3}}\n\n'
    b"event: message_stop\n"
    b'data: {"type":"message_stop"}\n\n'
)
START = (
    b"event: message_start\n"
    b'data: {"type":"message_start","message":{"id":"chatcmpl-1","usage":{"input_tokens":9}}}\n\n'
)


def passed(stream: bytes, cuts: list[int]) -> bytes:
    """What the proxy writes for `stream` read in pieces cut at `cuts`."""
    mender = MessageStart("smollm2")
    out = b""
    for begin, end in itertools.pairwise([0, *sorted(cuts), len(stream)]):
        out += mender.feed(stream[begin:end]) if not mender.done else stream[begin:end]
    return out + (b"" if mender.done else mender.flush())


def events(stream: bytes) -> list[dict[str, object]]:
    return [json.loads(line[6:]) for line in stream.split(b"\n") if line.startswith(b"data: ")]


cuts = st.lists(st.integers(min_value=0, max_value=len(HEADLESS)), max_size=8)


@given(cuts)
def test_a_stream_without_message_start_gets_one_in_front_whatever_the_reads(at: list[int]) -> None:
    out = passed(HEADLESS, at)
    assert out.endswith(HEADLESS)
    start = events(out)[0]
    assert start["type"] == "message_start"
    message = start["message"]
    assert isinstance(message, dict)
    assert message["role"] == "assistant" and message["content"] == [] and message["model"] == "smollm2"
    assert str(message["id"]).startswith("msg_")
    assert message["usage"] == {"input_tokens": 0, "output_tokens": 0}


@given(st.lists(st.integers(min_value=0, max_value=len(START + HEADLESS)), max_size=8))
def test_a_stream_that_begins_with_message_start_passes_byte_for_byte(at: list[int]) -> None:
    assert passed(START + HEADLESS, at) == START + HEADLESS


def test_a_ping_an_error_or_a_cut_stream_first_passes_unchanged() -> None:
    ping = b"event: ping\ndata: {}\n\n"
    error = b'event: error\ndata: {"type":"error","error":{"type":"api_error","message":"x"}}\n\n'
    for stream in (ping + START, error, b"event: content_bl"):
        assert passed(stream, [3]) == stream


def test_crlf_lines_and_the_event_name_without_a_space_are_read() -> None:
    crlf = HEADLESS.replace(b"\n", b"\r\n")
    assert events(passed(crlf, [5]))[0]["type"] == "message_start"
    assert first_event_name(b"event:message_stop\ndata: {}\n\n") == b"message_stop"
    assert first_event_name(b"data: {}\n\n") is None
