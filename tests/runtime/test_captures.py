"""The capture buffer: bounded, oldest dropped first, each capture read back as it was kept."""

from __future__ import annotations

import base64
import os

from halogen.runtime.base.captures import Captures


def _keep(captures: Captures, capture_id: int, body: bytes, *, failed: bool = False) -> bool:
    sink = captures.sink("/v1/chat/completions", {"Authorization": "[REDACTED]"})
    assert sink is not None
    sink.sent(b"request %d" % capture_id)
    sink.feed(body)
    return captures.add(capture_id, sink, {"Content-Type": "application/json"}, failed)


def test_captures_stay_within_the_buffer_dropping_the_oldest_and_read_back_whole() -> None:
    captures = Captures(1)
    bodies = {i: os.urandom(20_000) for i in range(1, 201)}  # 4 MB that does not compress
    for capture_id, body in bodies.items():
        assert _keep(captures, capture_id, body)
        assert captures.size <= captures.limit
    kept = [i for i in bodies if captures.has(i)]
    assert kept == list(range(kept[0], 201)) and 30 < len(kept) < 60  # the newest, in order
    for capture_id in (kept[0], kept[-1], kept[len(kept) // 2]):
        got = captures.get(capture_id)
        assert got is not None
        assert base64.b64decode(got["resp_body"]) == bodies[capture_id]
        assert base64.b64decode(got["req_body"]) == b"request %d" % capture_id
        assert got["req_headers"] == {"Authorization": "[REDACTED]"}
    assert captures.get(1) is None


def test_alike_captures_compress_together_and_a_failed_one_keeps_its_request_only() -> None:
    captures = Captures(1)
    body = b'{"choices": [{"message": {"content": "Hello!"}}], "usage": {"prompt_tokens": 9}}' * 4
    for capture_id in range(1, 1001):
        _keep(captures, capture_id, body)
    assert all(captures.has(i) for i in range(1, 1001))
    assert captures.size < 1000 * len(body) / 5  # the block being filled counted raw
    assert _keep(captures, 1001, b"an error body", failed=True)
    failed = captures.get(1001)
    assert failed is not None and failed["resp_body"] == "" and failed["req_body"]


def test_a_capture_bigger_than_the_buffer_is_not_kept_and_zero_keeps_none() -> None:
    captures = Captures(1)
    assert not _keep(captures, 1, b"x" * (2 * 1024 * 1024))
    assert not captures.has(1) and captures.size == 0
    assert Captures(0).sink("/v1/chat/completions", {}) is None
