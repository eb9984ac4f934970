"""A llama-server stand-in that costs as little as possible, for bench/runtime.py (stdlib only).

    python bench/fake_fast_upstream.py --port PORT

HTTP/1.1 with keep-alive on a bare asyncio protocol: `GET /health` → 200; `POST
/v1/chat/completions` → a small chat completion, or, with `"stream": true`, an SSE stream of
`max_tokens` content events (one write each, as llama-server sends one per token), a final
event and `data: [DONE]`. Anything else → 404. It binds 127.0.0.1 only. With
`--health-delay S`, `/health` answers 503 for S seconds after binding, like a model loading.
With `--metrics`, it answers as llama-server started with --metrics does: `timings` on the whole
answer and on a stream's final event, and `GET /metrics` with llama-server's series (some 2.5 KB).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from typing import Any

CREATED = 1700000000
COMPLETION = {
    "id": "chatcmpl-bench",
    "object": "chat.completion",
    "created": CREATED,
    "model": "fast",
    "system_fingerprint": "b0-bench",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello!"}, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 9, "completion_tokens": 2, "total_tokens": 11},
}


def _event(delta: dict[str, Any], finish: str | None, **extra: Any) -> bytes:
    data = {
        "choices": [{"finish_reason": finish, "index": 0, "delta": delta}],
        "created": CREATED,
        "id": "chatcmpl-bench",
        "model": "fast",
        "system_fingerprint": "b0-bench",
        "object": "chat.completion.chunk",
        **extra,
    }
    payload = b"data: " + json.dumps(data, separators=(",", ":")).encode() + b"\n\n"
    return b"%x\r\n%s\r\n" % (len(payload), payload)


def _response(status: str, content_type: str, body: bytes) -> bytes:
    return (
        f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {len(body)}\r\n"
        "Connection: keep-alive\r\n\r\n"
    ).encode() + body


HEALTH = _response("200 OK", "application/json", b'{"status":"ok"}')
LOADING = _response(
    "503 Service Unavailable",
    "application/json",
    b'{"error":{"code":503,"message":"Loading model","type":"unavailable_error"}}',
)
READY_AT = 0.0
LLAMA_METRICS = False
NOT_FOUND = _response("404 Not Found", "application/json", b'{"error":{"code":404,"message":"not found"}}')
ANSWER = _response("200 OK", "application/json", json.dumps(COMPLETION, separators=(",", ":")).encode())
STREAM_HEAD = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
    b"Transfer-Encoding: chunked\r\nConnection: keep-alive\r\n\r\n"
)
# Tokens that differ from one event to the next, as real ones do: LiteLLM ends a stream that
# repeats one chunk 100 times as a model stuck in a loop.
TOKENS = [_event({"content": f" t{i:02d}"}, None) for i in range(16)]
FINAL = _event({}, "stop", usage={"prompt_tokens": 9, "completion_tokens": 0, "total_tokens": 9})
DONE = b"%x\r\n%s\r\n0\r\n\r\n" % (len(b"data: [DONE]\n\n"), b"data: [DONE]\n\n")
# What llama-server (0.3.36's) puts in `timings`, and the series its /metrics writes
# (server_task_result_metrics::to_metrics in tools/server/server-task.cpp).
TIMINGS = {
    "cache_n": 0,
    "prompt_n": 9,
    "prompt_ms": 40.1,
    "prompt_per_token_ms": 4.46,
    "prompt_per_second": 224.4,
    "predicted_n": 16,
    "predicted_ms": 300.0,
    "predicted_per_token_ms": 20.0,
    "predicted_per_second": 50.0,
}
COUNTERS = (
    "prompt_tokens_total",
    "prompt_tokens_cached_total",
    "prompt_seconds_total",
    "tokens_predicted_total",
    "tokens_predicted_seconds_total",
    "n_decode_total",
    "n_tokens_max",
    "spec_decode_num_draft_tokens_total",
    "spec_decode_num_accepted_tokens_total",
    "spec_decode_num_drafts_total",
)
GAUGES = (
    "prompt_tokens_seconds",
    "predicted_tokens_seconds",
    "requests_processing",
    "requests_deferred",
    "n_busy_slots_per_decode",
)
METRICS_TEXT = "".join(
    f"# HELP llamacpp:{name} What llama-server says of {name}, in a sentence of about this length\n"
    f"# TYPE llamacpp:{name} {kind}\nllamacpp:{name} {i * 7}\n"
    for i, (name, kind) in enumerate([*((c, "counter") for c in COUNTERS), *((g, "gauge") for g in GAUGES)])
).encode()
METRICS = _response("200 OK", "text/plain; version=0.0.4", METRICS_TEXT)


class Connection(asyncio.Protocol):
    """One client connection: requests are parsed from a buffer and answered in order; while a
    stream is being written, later (pipelined) requests wait in the buffer."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.streaming = False
        self.closed = False
        self.writable = asyncio.Event()
        self.writable.set()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.writable.set()

    def pause_writing(self) -> None:
        self.writable.clear()

    def resume_writing(self) -> None:
        self.writable.set()

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if not self.streaming:
            self.serve_buffered()

    def serve_buffered(self) -> None:
        assert self.transport is not None
        while not self.streaming and not self.closed:
            request = self.next_request()
            if request is None:
                return
            method, path, body = request
            if method == b"GET" and path == b"/health":
                self.transport.write(HEALTH if time.monotonic() >= READY_AT else LOADING)
            elif method == b"GET" and path == b"/metrics" and LLAMA_METRICS:
                self.transport.write(METRICS)
            elif method == b"POST" and path == b"/v1/chat/completions":
                try:
                    payload = json.loads(body)
                except ValueError:
                    payload = {}
                if payload.get("stream"):
                    self.streaming = True
                    asyncio.get_running_loop().create_task(self.stream(int(payload.get("max_tokens") or 16)))
                else:
                    self.transport.write(ANSWER)
            else:
                self.transport.write(NOT_FOUND)

    def next_request(self) -> tuple[bytes, bytes, bytes] | None:
        """(method, path, body) of the first complete request in the buffer, removed from it."""
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            return None
        head = bytes(self.buffer[:end]).split(b"\r\n")
        method, target, _ = head[0].split(b" ", 2)
        headers = {}
        for line in head[1:]:
            name, _, value = line.partition(b":")
            headers[name.strip().lower()] = value.strip()
        start = end + 4
        if b"chunked" in headers.get(b"transfer-encoding", b"").lower():
            body = bytearray()
            at = start
            while True:
                eol = self.buffer.find(b"\r\n", at)
                if eol < 0:
                    return None
                size = int(bytes(self.buffer[at:eol]).split(b";")[0], 16)
                if len(self.buffer) < eol + 2 + size + 2:
                    return None
                body += self.buffer[eol + 2 : eol + 2 + size]
                at = eol + 2 + size + 2
                if size == 0:
                    break
            del self.buffer[:at]
            return method, target.split(b"?")[0], bytes(body)
        length = int(headers.get(b"content-length", b"0"))
        if len(self.buffer) < start + length:
            return None
        body_bytes = bytes(self.buffer[start : start + length])
        del self.buffer[: start + length]
        return method, target.split(b"?")[0], body_bytes

    async def stream(self, tokens: int) -> None:
        assert self.transport is not None
        self.transport.write(STREAM_HEAD)
        for i in range(tokens):
            if self.closed:
                return
            self.transport.write(TOKENS[i % len(TOKENS)])
            # One event per write and a turn of the loop between them, as a generating server
            # sends them; waiting when the reader is slow keeps the buffer bounded.
            await self.writable.wait()
            await asyncio.sleep(0)
        if self.closed:
            return
        self.transport.write(FINAL)
        self.transport.write(DONE)
        self.streaming = False
        self.serve_buffered()


async def main() -> None:
    global READY_AT, LLAMA_METRICS, ANSWER, FINAL
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--health-delay", type=float, default=0.0, help="seconds of 503 after binding")
    parser.add_argument("--metrics", action="store_true", help="timings and /metrics, as llama-server")
    args = parser.parse_args()
    if args.metrics:
        LLAMA_METRICS = True
        ANSWER = _response(
            "200 OK",
            "application/json",
            json.dumps({**COMPLETION, "timings": TIMINGS}, separators=(",", ":")).encode(),
        )
        FINAL = _event(
            {},
            "stop",
            usage={"prompt_tokens": 9, "completion_tokens": 16, "total_tokens": 25},
            timings=TIMINGS,
        )
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Connection, "127.0.0.1", args.port, backlog=1024)
    READY_AT = time.monotonic() + args.health_delay
    print(f"fake-fast-upstream listening on 127.0.0.1:{args.port}", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())
