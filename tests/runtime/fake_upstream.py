"""A llama-server stand-in, run as a real process by the runtime tests (stdlib only).

It binds its port at once and answers `/health` 503 `Loading model` until `--health-delay`
has passed, like llama-server. Every event (start, request, signal, client disconnect) is
appended as one JSON line to `--record`, so tests can see what reached the upstream.

Per-request behaviour comes from headers the proxy passes through:
  X-Fake-Chunks: N          number of streamed content chunks
  X-Fake-Chunk-Delay: S     seconds between chunks
  X-Fake-Gate: PATH         after the first chunk, wait until PATH exists
  X-Fake-Die-After: K       exit abruptly after K chunks (or before answering when 0)
  X-Fake-Die-Mid-Body: 1    exit abruptly halfway through a JSON answer
  X-Fake-Close: 1           close the connection without answering
  X-Fake-Status: N          answer N with a llama-server error body instead
  X-Fake-Chunk-Bytes: N     pad each streamed content chunk to N bytes
  X-Fake-Done-Linger: S      end a stream's body S seconds after its `data: [DONE]`
  X-Fake-Events: 1          answer a streamed request on any path (/v1/messages, /v1/responses)
                            with the chat stream, so a test can break it
  X-Fake-Report-Stall: 1    with a small send buffer, record `stalled` (bytes sent so far) the
                            first time the reader stops taking data, and `streamed` at the end

With `--metrics` it serves `/metrics` as llama-server does (Prometheus text, a few of its
`llamacpp:` series, counting the completions it answered); without it, llama-server's 501. With
`--metrics-text PATH` the answer is PATH's bytes instead, read at each request (a test can make
them hostile), and with `--metrics-hang` the request is never answered.

With `--drop-reused`, every request that arrives on a connection already used once is dropped
unanswered (recorded as `dropped`): what a client sees when llama-server closes an idle
keep-alive connection just as the client sends on it.
"""

from __future__ import annotations

import argparse
import json
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

ARGS: argparse.Namespace
STARTED = time.monotonic()
RECORD_LOCK = threading.Lock()
ANSWERED = [0]  # completions answered, for /metrics


def record(event: str, **fields: Any) -> None:
    if not ARGS.record:
        return
    line = json.dumps({"event": event, "pid": os.getpid(), **fields})
    with RECORD_LOCK, open(ARGS.record, "a", encoding="utf-8") as out:
        out.write(line + "\n")


def say(message: str) -> None:
    print(f"fake-upstream[{ARGS.name}]: {message}", flush=True)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    served = 0  # requests on this connection (one handler per connection)

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _json(self, status: int, payload: Any) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.headers.get("X-Fake-Die-Mid-Body"):
            self.wfile.write(data[: len(data) // 2])
            self.wfile.flush()
            say("crashing on purpose mid-body")
            os._exit(9)
        self.wfile.write(data)

    def _echo(self, body: bytes) -> dict[str, Any]:
        parts = urlsplit(self.path)
        try:
            parsed: Any = json.loads(body) if body else None
        except ValueError:
            parsed = body.decode("utf-8", "replace")
        return {
            "method": self.command,
            "path": parts.path,
            "query": parts.query,
            "headers": {k.lower(): v for k, v in self.headers.items()},
            "body": parsed,
            "raw": body.decode("utf-8", "replace"),
        }

    def do_GET(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def do_PUT(self) -> None:
        self._handle()

    def do_DELETE(self) -> None:
        self._handle()

    def _handle(self) -> None:
        body = self._read_body()
        self.served += 1
        if ARGS.drop_reused and self.served > 1:
            record("dropped", path=urlsplit(self.path).path)
            self.close_connection = True
            return
        path = urlsplit(self.path).path
        if path == "/health":
            ready = not ARGS.never_ready and time.monotonic() - STARTED >= ARGS.health_delay
            if ready and ARGS.ready_gate:
                ready = os.path.exists(ARGS.ready_gate)
            if ready:
                self._json(200, {"status": "ok"})
            else:
                self._json(
                    503, {"error": {"code": 503, "message": "Loading model", "type": "unavailable_error"}}
                )
            return
        if path == "/metrics":
            self._metrics()
            return
        echo = self._echo(body)
        record("request", **echo)
        if ARGS.api_key and self.headers.get("Authorization") != f"Bearer {ARGS.api_key}":
            # llama-server's answer when started with --api-key (tools/server/server-http.cpp).
            self._json(
                401, {"error": {"message": "Invalid API Key", "type": "authentication_error", "code": 401}}
            )
            return
        if self.headers.get("X-Fake-Close"):
            say("closing the connection without an answer")
            self.close_connection = True
            return
        if self.headers.get("X-Fake-Die-After") == "0":
            say("crashing on purpose before answering")
            os._exit(9)
        status = int(self.headers.get("X-Fake-Status") or 200)
        if status != 200:
            self._json(status, {"error": {"code": status, "message": "fake failure", "type": "server_error"}})
            return
        request = echo["body"] if isinstance(echo["body"], dict) else {}
        if path in ("/v1/chat/completions", "/v1/completions", "/completion") or (
            self.headers.get("X-Fake-Events") and request.get("stream")
        ):
            if request.get("stream"):
                self._stream(path, request)
            else:
                self._complete(path, request, echo)
        elif path == "/v1/embeddings":
            self._json(
                200,
                {
                    "object": "list",
                    "model": request.get("model", ARGS.name),
                    "data": [{"object": "embedding", "index": 0, "embedding": [0.25, -0.5, 1.0]}],
                    "usage": {"prompt_tokens": 4, "total_tokens": 4},
                    "echo": echo,
                },
            )
        elif path in ("/v1/rerank", "/rerank"):
            # llama-server's shape (format_response_rerank, tools/server/server-common.cpp).
            documents = request.get("documents") or []
            results = [{"index": i, "relevance_score": 1.0 / (i + 1)} for i in range(len(documents))]
            self._json(
                200,
                {
                    "model": request.get("model", ARGS.name),
                    "object": "list",
                    "results": results,
                    "echo": echo,
                },
            )
        else:
            self._json(200, {"served_by": ARGS.name, "echo": echo})

    def _metrics(self) -> None:
        record("metrics")
        if not ARGS.metrics:
            # llama-server's answer without --metrics (tools/server/server-context.cpp).
            self._json(
                501,
                {
                    "error": {
                        "code": 501,
                        "message": "This server does not support metrics endpoint. Start it with `--metrics`",
                        "type": "not_supported_error",
                    }
                },
            )
            return
        if ARGS.api_key and self.headers.get("Authorization") != f"Bearer {ARGS.api_key}":
            # llama-server asks for its key on /metrics too (only /health is public).
            self._json(
                401, {"error": {"message": "Invalid API Key", "type": "authentication_error", "code": 401}}
            )
            return
        if ARGS.metrics_hang:
            while True:
                time.sleep(60)
        if ARGS.metrics_text:
            with open(ARGS.metrics_text, "rb") as source:
                data = source.read()
        else:
            # The shape of server_task_result_metrics::to_metrics (tools/server/server-task.cpp).
            data = (
                "# HELP llamacpp:prompt_tokens_total Number of prompt tokens processed, excluding cached tokens\n"
                "# TYPE llamacpp:prompt_tokens_total counter\n"
                f"llamacpp:prompt_tokens_total {7 * ANSWERED[0]}\n"
                "# HELP llamacpp:tokens_predicted_total Number of generation tokens processed\n"
                "# TYPE llamacpp:tokens_predicted_total counter\n"
                f"llamacpp:tokens_predicted_total {3 * ANSWERED[0]}\n"
                "# HELP llamacpp:requests_processing Number of requests processing\n"
                "# TYPE llamacpp:requests_processing gauge\n"
                "llamacpp:requests_processing 0\n"
            ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _complete(self, path: str, request: dict[str, Any], echo: dict[str, Any]) -> None:
        ANSWERED[0] += 1
        text = f"hello from {ARGS.name}"
        if path == "/v1/chat/completions":
            choice: dict[str, Any] = {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "finish_reason": "stop",
            }
            kind = "chat.completion"
        else:
            choice = {"index": 0, "text": text, "finish_reason": "stop"}
            kind = "text_completion"
        self._json(
            200,
            {
                "object": kind,
                "model": request.get("model", ARGS.name),
                "served_by": ARGS.name,
                "choices": [choice],
                "usage": {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10},
                "timings": {
                    "prompt_n": 7,
                    "prompt_ms": 1.5,
                    "predicted_n": 3,
                    "predicted_ms": 2.5,
                    "predicted_per_second": 800.0,  # 1e3 / predicted_ms * (predicted_n - 1)
                    "cache_n": 0,
                },
                "echo": echo,
            },
        )

    def _stream(self, path: str, request: dict[str, Any]) -> None:
        ANSWERED[0] += 1
        chunks = int(self.headers.get("X-Fake-Chunks") or ARGS.chunks)
        delay = float(self.headers.get("X-Fake-Chunk-Delay") or 0)
        gate = self.headers.get("X-Fake-Gate")
        die_after = self.headers.get("X-Fake-Die-After")
        pad = int(self.headers.get("X-Fake-Chunk-Bytes") or 0)
        watch_stall = bool(self.headers.get("X-Fake-Report-Stall"))
        chat = path == "/v1/chat/completions"
        sent = 0
        stalled = False
        if watch_stall:
            # A small buffer of its own, so what the reader has not taken stays visible here.
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 * 1024)
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

        def send(payload: bytes) -> None:
            nonlocal sent, stalled
            if watch_stall and not stalled:
                _, writable, _ = select.select([], [self.connection], [], 0.5)
                if not writable:
                    stalled = True
                    record("stalled", bytes=sent)
            sent += len(payload)
            self.wfile.write(f"{len(payload):x}\r\n".encode() + payload + b"\r\n")
            self.wfile.flush()

        def event(data: dict[str, Any]) -> None:
            send(b"data: " + json.dumps(data).encode() + b"\n\n")

        try:
            for i in range(chunks):
                if die_after is not None and i == int(die_after):
                    say(f"crashing on purpose after {i} chunks")
                    os._exit(9)
                text = f"tok{i} ".ljust(pad, "x")
                if chat:
                    choice: dict[str, Any] = {
                        "index": 0,
                        "delta": {"content": text},
                        "finish_reason": None,
                    }
                else:
                    choice = {"index": 0, "text": text, "finish_reason": None}
                event(
                    {
                        "object": "chat.completion.chunk",
                        "model": request.get("model"),
                        "served_by": ARGS.name,
                        "choices": [choice],
                    }
                )
                if i == 0 and gate:
                    while not os.path.exists(gate):
                        time.sleep(0.01)
                elif delay:
                    time.sleep(delay)
            # X-Fake-Finish: the finish_reason the last event gives (llama-server: stop or length).
            final: dict[str, Any] = {"index": 0, "finish_reason": self.headers.get("X-Fake-Finish", "stop")}
            final["delta" if chat else "text"] = {} if chat else ""
            event(
                {
                    "object": "chat.completion.chunk",
                    "model": request.get("model"),
                    "choices": [final],
                    "usage": {"prompt_tokens": 11, "completion_tokens": chunks, "total_tokens": 11 + chunks},
                    "timings": {
                        "prompt_n": 11,
                        "prompt_ms": 1.0,
                        "predicted_n": chunks,
                        "predicted_ms": 2.0,
                        # llama-server's n_gen_tps: the first token is not timed (0 for one).
                        "predicted_per_second": 1e3 / 2.0 * max(chunks - 1, 0),
                        "cache_n": 0,
                    },
                }
            )
            send(b"data: [DONE]\n\n")
            # X-Fake-Done-Linger: S: the body ends S seconds after its last event.
            time.sleep(float(self.headers.get("X-Fake-Done-Linger") or 0))
            send(b"")
            if watch_stall:
                record("streamed", bytes=sent)
        except (BrokenPipeError, ConnectionResetError):
            record("disconnect", path=path)


class Server(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that hangs up is recorded by the handler; llama-server prints nothing either.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


def spawn_grandchild() -> None:
    # Same process group as this fake: only a group-wide stop reaches it.
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    record("grandchild", child=child.pid)


def main() -> None:
    global ARGS
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--name", default="fake")
    parser.add_argument(
        "-m", "--model", default="", help="a model file, as llama-server takes it (never read)"
    )
    parser.add_argument("--record", default="")
    parser.add_argument("--health-delay", type=float, default=0.0)
    parser.add_argument("--never-ready", action="store_true")
    parser.add_argument("--exit-at-start", type=int, default=None)
    parser.add_argument("--ignore-sigterm", action="store_true")
    parser.add_argument("--grandchild", action="store_true")
    parser.add_argument("--chunks", type=int, default=3)
    parser.add_argument("--hang-at-start", action="store_true", help="never bind the port")
    parser.add_argument("--ready-gate", default="", help="/health answers 503 until this path exists")
    parser.add_argument("--note", action="append", default=[], help="ignored; recorded with argv")
    parser.add_argument(
        "--api-key",
        "--api_key",  # llama-server reads '_' as '-' in '--' flags (common/arg.cpp)
        dest="api_key",
        default="",
        help="answer 401 to requests without this key, /health aside",
    )
    parser.add_argument("--api-key-file", default="", help="the key's file: one a line, '#' comments")
    parser.add_argument("--drop-reused", action="store_true", help="drop requests on a reused connection")
    parser.add_argument("--metrics", action="store_true", help="serve /metrics, as llama-server does")
    parser.add_argument("--metrics-text", default="", help="with --metrics: answer /metrics with this file")
    parser.add_argument("--metrics-hang", action="store_true", help="with --metrics: never answer /metrics")
    ARGS = parser.parse_args()
    if ARGS.api_key_file:
        with open(ARGS.api_key_file, encoding="utf-8") as keys:
            ARGS.api_key = next(k for k in keys.read().splitlines() if k and not k.startswith("#"))
    record(
        "start",
        pgid=os.getpgid(0),
        argv=sys.argv[1:],
        env={k: v for k, v in os.environ.items() if k.startswith("FAKE_")},
    )
    say("loading model")
    if ARGS.exit_at_start is not None:
        say("error: failed to load model 'fake.gguf'")
        sys.exit(ARGS.exit_at_start)

    def on_term(signum: int, frame: Any) -> None:
        if ARGS.ignore_sigterm:
            record("signal-ignored", signal=signal.Signals(signum).name)
            return
        record("signal", signal=signal.Signals(signum).name)
        os._exit(0)

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    if ARGS.grandchild:
        spawn_grandchild()
    if ARGS.hang_at_start:
        say("hanging before it binds its port")
        while True:
            time.sleep(60)
    try:
        server = Server(("127.0.0.1", ARGS.port), Handler)
    except OSError as exc:
        # llama-server's words when its port is taken.
        say(f"couldn't bind HTTP server socket, hostname: 127.0.0.1, port: {ARGS.port}: {exc.strerror}")
        record("bind-failed", error=exc.strerror)
        sys.exit(1)
    server.daemon_threads = True
    say(f"listening on 127.0.0.1:{ARGS.port}")
    server.serve_forever()


if __name__ == "__main__":
    main()
