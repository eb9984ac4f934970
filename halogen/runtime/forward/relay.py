"""The one relay: a target's answer streamed back to the client, whatever the target (a local
model or a peer) and whatever the API, with the same end on every failure.

What passes is llama-swap's: a reverse proxy copies the answer's status and end-to-end headers
and flushes each read of an event stream at once, with `X-Accel-Buffering: no` (ProxyRequest in
internal/process/process.go; the peer's ModifyResponse in internal/router/peer.go). Where
llama-swap's copies differ this takes the fuller one for both: `Cache-Control: no-cache` on an
event stream and the `message_start` mend (`message_start.py`) reach a peer's stream too.

An encoder per API says how the stream goes on the wire and how it ends when the target fails
after it began. llama-swap's ErrorHandler gives up once the answer has started
(swaputil.ResponseStarted, internal/router/peer.go), which leaves the client with a stream cut
off; here the failure is the stream's last event, as llama-server writes one (`format_error`
in tools/server/server-context.cpp: an SSE `{"error": ...}` event for OpenAI and Responses, an
`event: error` for Anthropic), and for Ollama a last `{"error": ...}` line, which its client
raises (`stream` in api/client.go, Ollama). A body that is not a stream is cut off instead, so
it never looks complete."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import aiohttp
from aiohttp import web

from halogen.runtime.base.captures import Sink
from halogen.runtime.base.metrics import TokenReader
from halogen.runtime.forward.message_start import MESSAGES, MessageStart
from halogen.runtime.forward.proxy import encode, is_event_stream, response_headers
from halogen.runtime.forward.target import Target

NDJSON = "application/x-ndjson"
# Where a request's capture gathers its bodies (llama-swap's UI, `/api/captures/{id}`), when on.
CAPTURE = web.RequestKey("capture", Sink)


def sent(request: web.Request, body: bytes | None) -> None:
    """The body the target is sent, for the request's capture."""
    sink = request.get(CAPTURE)
    if sink is not None:
        sink.sent(body)


@dataclass
class Outcome:
    """What a relayed exchange amounted to, for the metrics."""

    status: int
    tokens: tuple[int, int] | None = None
    broken: bool = False  # the target failed after its answer had begun
    first_event_ns: int | None = None  # when an event stream's first bytes arrived (monotonic)
    timings: dict[str, Any] | None = None  # llama-server's last `timings`, for the activity log
    error: str = ""  # an error body's message, for the activity log
    delivered: bool = False  # the whole answer was written, all but the end of the chunking

    @property
    def counted(self) -> int:
        """The status the request is counted under: 502 for an answer cut short."""
        return 502 if self.broken else self.status


# The last event of a stream in each API llama-server speaks: OpenAI's chat and completions,
# Anthropic's messages, OpenAI's responses (tools/server/server-task.cpp, llama.cpp). Once it is
# written, the client has the whole answer.
STREAM_ENDS = (b"data: [DONE]", b"event: message_stop", b"response.completed")

OUTCOME = web.RequestKey("outcome", Outcome)
"""The Outcome of the answer being relayed, filled in as it goes."""


class Encoder(Protocol):
    """How one API's stream goes to the client: what to write for each chunk the target sent,
    at its end, and in place of its end when the target failed."""

    def feed(self, chunk: bytes) -> bytes: ...

    def close(self) -> bytes: ...

    def fail(self, message: str) -> bytes: ...


def error_event(message: str, status: int = 502, kind: str = "upstream_error") -> bytes:
    """An OpenAI (and Responses) stream's error event, as llama-server writes one."""
    return b"data: " + encode({"error": {"message": message, "type": kind, "code": status}}) + b"\n\n"


class Sse:
    """OpenAI's and the Responses API's event streams: the events pass as they come."""

    def feed(self, chunk: bytes) -> bytes:
        return chunk

    def close(self) -> bytes:
        return b""

    def fail(self, message: str) -> bytes:
        return error_event(message)


class AnthropicEvents:
    """Anthropic's event stream, given the `message_start` llama-server may leave out
    (`message_start.MessageStart`); a failure is an `event: error` in Anthropic's own shape
    (its streaming reference, "Error events"), which its clients raise."""

    def __init__(self, model: str, mend: bool) -> None:
        self._start = MessageStart(model) if mend else None

    def feed(self, chunk: bytes) -> bytes:
        start = self._start
        if start is None:
            return chunk
        chunk = start.feed(chunk)
        if start.done:
            self._start = None
        return chunk

    def close(self) -> bytes:
        start, self._start = self._start, None
        return b"" if start is None else start.flush()

    def fail(self, message: str) -> bytes:
        error = {"type": "error", "error": {"type": "api_error", "message": message}}
        return self.close() + b"event: error\ndata: " + encode(error) + b"\n\n"


class Translator(Protocol):
    """What turns an upstream event stream into another API's lines (`ollama.stream`)."""

    def feed(self, chunk: bytes) -> Sequence[bytes]: ...

    def close(self) -> Sequence[bytes]: ...


class Ndjson:
    """Ollama's stream: the upstream's events translated to JSON lines; a failure is a last
    `{"error": ...}` line (StreamResponse handling in api/client.go, Ollama)."""

    def __init__(self, translator: Translator) -> None:
        self._translator = translator

    def feed(self, chunk: bytes) -> bytes:
        return b"".join(self._translator.feed(chunk))

    def close(self) -> bytes:
        return b"".join(self._translator.close())

    def fail(self, message: str) -> bytes:
        return encode({"error": message}) + b"\n"


def passing(request: web.Request, target: Target, answer: aiohttp.ClientResponse) -> Encoder | None:
    """The encoder for an answer that passes as the target wrote it; None when it is no event
    stream (or is compressed, so not readable here: its events pass untouched, cut off on a
    failure)."""
    if not is_event_stream(answer.headers.get("Content-Type", "")):
        return None
    if request.path in MESSAGES:
        readable = "Content-Encoding" not in answer.headers
        return AnthropicEvents(target.model_id, mend=readable and answer.status == 200)
    return Sse()


async def relay(
    request: web.Request,
    target: Target,
    answer: aiohttp.ClientResponse,
    *,
    prepared: web.StreamResponse | None = None,
) -> tuple[web.StreamResponse, Outcome]:
    """Stream `answer` back as the target wrote it, status and end-to-end headers with it.

    A client that goes away (the handler is cancelled, or a write fails) closes the target's
    connection instead of returning it to the pool, which is how llama-server learns to stop
    generating.

    `prepared` is an event stream already begun (loading progress): the answer's events follow
    in it, and an answer that is not a 200 becomes one error event there."""
    try:
        if prepared is not None:
            return prepared, await _continue(request, prepared, target, answer)
        response = web.StreamResponse(status=answer.status, reason=answer.reason)
        response.headers.extend(response_headers(answer.headers))
        encoder = passing(request, target, answer)
        if encoder is not None:
            response.headers["X-Accel-Buffering"] = "no"
            response.headers.setdefault("Cache-Control", "no-cache")
        elif "Content-Length" in answer.headers and request.method != "HEAD":
            response.content_length = int(answer.headers["Content-Length"])
        readable = "Content-Encoding" not in answer.headers
        tokens = TokenReader(encoder is not None) if readable else None
        await response.prepare(request)
        return response, await _copy(request, response, target, answer, encoder, tokens)
    except BaseException:
        answer.close()
        raise
    finally:
        answer.release()


async def translated(
    request: web.Request,
    target: Target,
    answer: aiohttp.ClientResponse,
    encoder: Encoder,
    *,
    prepared: web.StreamResponse | None = None,
    content_type: str = NDJSON,
) -> tuple[web.StreamResponse, Outcome]:
    """Stream `answer`, an event stream, back in another API's form (`encoder`): in `prepared`
    when that stream has begun, else in a new one of `content_type`."""
    response = prepared
    if response is None:
        response = web.StreamResponse(headers={"Content-Type": content_type, "X-Accel-Buffering": "no"})
        await response.prepare(request)
    return response, await _copy(request, response, target, answer, encoder, TokenReader(True))


async def _copy(
    request: web.Request,
    response: web.StreamResponse,
    target: Target,
    answer: aiohttp.ClientResponse,
    encoder: Encoder | None,
    tokens: TokenReader | None,
) -> Outcome:
    """Write what the target sends, as it arrives, through `encoder` (bytes as they are when
    None), and end the response: cleanly, with the encoder's failure, or cut off."""
    outcome = Outcome(answer.status)
    request[OUTCOME] = outcome  # what the request amounted to, even if the client leaves at the end
    sink = request.get(CAPTURE)
    try:
        async for chunk in answer.content.iter_any():
            if outcome.first_event_ns is None and encoder is not None:
                outcome.first_event_ns = time.monotonic_ns()
            if tokens is not None:
                tokens.feed(chunk)
            if sink is not None:
                sink.feed(chunk)
            out = chunk if encoder is None else encoder.feed(chunk)
            if out:
                await response.write(out)
            if encoder is not None and not outcome.delivered:
                outcome.delivered = any(end in chunk for end in STREAM_ENDS)
        tail = b"" if encoder is None else encoder.close()
    except (asyncio.CancelledError, ConnectionResetError):
        # The client left (a client may close as soon as it has read the stream's last event,
        # before the target's body has ended here): the request keeps what it carried so far.
        if tokens is not None:
            outcome.tokens = tokens.counts
            outcome.timings, outcome.error = tokens.timings, tokens.error
        raise
    except (aiohttp.ClientPayloadError, aiohttp.ClientConnectionError) as exc:
        # Only reading can raise these (writes to the client raise ConnectionResetError).
        outcome.broken = True
        message = (await target.failed("failed mid-answer", exc)).text()
        answer.close()
        if encoder is not None:
            await response.write(encoder.fail(message))
            await response.write_eof()
        elif request.transport is not None:
            request.transport.abort()  # a body cut short must not look complete
        return outcome
    if tokens is not None:
        outcome.tokens = tokens.close()
        outcome.timings, outcome.error = tokens.timings, tokens.error
    if tail:
        await response.write(tail)
    # A client that has read the whole answer may close at once: the request still counts as
    # answered, not as a client gone mid-answer (Runtime.counted reads OUTCOME then).
    outcome.delivered = True
    await response.write_eof()
    return outcome


async def _continue(
    request: web.Request, response: web.StreamResponse, target: Target, answer: aiohttp.ClientResponse
) -> Outcome:
    """The target's answer written on into an event stream already begun."""
    if answer.status == 200:
        return await _copy(request, response, target, answer, Sse(), TokenReader(event_stream=True))
    outcome = Outcome(answer.status)
    try:
        text = (await answer.read()).decode("utf-8", "replace")
    except (aiohttp.ClientPayloadError, aiohttp.ClientConnectionError) as exc:
        outcome.broken = True
        await response.write(error_event((await target.failed("failed mid-answer", exc)).text()))
        return outcome
    try:
        error: Any = json.loads(text)
    except ValueError:
        await response.write(error_event(text, answer.status))
    else:
        await response.write(b"data: " + encode(error) + b"\n\n")
    await response.write_eof()
    return outcome
