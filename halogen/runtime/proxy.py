"""Forwarding one request to an upstream and its answer back, chunk by chunk."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp import web
from multidict import CIMultiDict, MultiMapping

from halogen.llamaswap.resolve import Runnable
from halogen.runtime.errors import UpstreamFailed
from halogen.runtime.message_start import MESSAGES, MessageStart
from halogen.runtime.metrics import TokenReader
from halogen.runtime.process.pool import Attempt
from halogen.runtime.upstream import Upstream

# RFC 9110 §7.6.1 connection-specific fields, plus what aiohttp recomputes for each hop.
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "trailers",
        "transfer-encoding",
        "upgrade",
        "host",
        "content-length",
        "expect",
    }
)
# The proxy's own credentials, never passed on when the proxy checks them itself.
CREDENTIALS = frozenset({"authorization", "x-api-key"})


def rewrite(
    runnable: Runnable, body: Mapping[str, Any], requested: str | None = None
) -> dict[str, Any] | None:
    """The JSON body to send upstream after `useModelName` and `filters` (strip, set, then the
    params set for the id the client asked for, `requested`), or None when the client's bytes
    can go unchanged. Order as applyFilters in internal/server/filters.go (llama-swap). (The
    config's filters never name "model": resolving the config drops it.)"""
    out = dict(body)
    if runnable.use_model_name:
        out["model"] = runnable.use_model_name
    for key in runnable.strip_params:
        out.pop(key, None)
    for key, value in runnable.set_params.items():
        set_path(out, key, value)
    for key, value in params_for(runnable, requested).items():
        set_path(out, key, value)
    if out == body and list(out) == list(body):
        return None
    return out


def filters(runnable: Runnable, requested: str | None) -> bool:
    """Whether `rewrite` may change more of a body than its model (which a rename does on the
    bytes, `Carried.naming`): only then is the body parsed."""
    return bool(runnable.strip_params or runnable.set_params or params_for(runnable, requested))


def params_for(runnable: Runnable, requested: str | None) -> Mapping[str, Any]:
    """The `setParamsByID` entry for the id a request named (as sent, or without `:latest`)."""
    if requested is None or not runnable.set_params_by_id:
        return {}
    for candidate in (requested, requested.removesuffix(":latest")):
        if candidate in runnable.set_params_by_id:
            return runnable.set_params_by_id[candidate]
    return {}


def set_path(body: dict[str, Any], path: str, value: Any) -> None:
    """Set `value` at `path`, whose dots (unless escaped as `\\.`) name nested objects, the way
    llama-swap's sjson.SetBytes reads a key: `chat_template_kwargs.enable_thinking` sets one
    field inside that object, keeping the others. The objects on the way are copied, never
    changed in place, and made where missing (or where something else stands)."""
    parts = [part.replace("\x00", ".") for part in path.replace("\\.", "\x00").split(".")]
    node = body
    for part in parts[:-1]:
        child = node.get(part)
        node[part] = dict(child) if isinstance(child, dict) else {}
        node = node[part]
    node[parts[-1]] = value


def encode(body: Mapping[str, Any]) -> bytes:
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()


def _end_to_end(headers: MultiMapping[str], drop: frozenset[str] = frozenset()) -> CIMultiDict[str]:
    """`headers` minus those that belong to one hop (and those the Connection header names),
    minus `drop` (lower case); a repeated header keeps every value, in order."""
    named = {
        token.strip().lower()
        for value in headers.getall("Connection", [])
        for token in value.split(",")
        if token.strip()
    }
    out: CIMultiDict[str] = CIMultiDict()
    for name, value in headers.items():
        lower = name.lower()
        if lower not in HOP_BY_HOP and lower not in named and lower not in drop:
            out.add(name, value)
    return out


def request_headers(headers: MultiMapping[str], *, drop_credentials: bool) -> CIMultiDict[str]:
    """The client's end-to-end headers, minus the proxy's own API key when it checks keys."""
    return _end_to_end(headers, CREDENTIALS if drop_credentials else frozenset())


def response_headers(headers: MultiMapping[str]) -> CIMultiDict[str]:
    """The upstream's end-to-end headers."""
    return _end_to_end(headers)


@dataclass
class Outcome:
    """What a forwarded exchange amounted to, for the metrics."""

    status: int
    tokens: tuple[int, int] | None = None
    broken: bool = False  # the upstream failed after its answer had begun


def is_event_stream(content_type: str) -> bool:
    return content_type.split(";", 1)[0].strip().lower() == "text/event-stream"


async def open_upstream(
    upstream: Upstream,
    method: str,
    path_qs: str,
    *,
    headers: Mapping[str, str] | None = None,
    body: bytes | None = None,
) -> aiohttp.ClientResponse:
    """Send a request to the model's process on its pooled client; `UpstreamFailed` (with the
    process's last output) when it cannot be reached or dies before answering.

    A pooled connection that fails before any byte of an answer was most likely closed by the
    upstream while idle (llama-server closes them after 5 s): the request, whose body is held
    whole and so can be sent again, is retried once on a new connection."""
    key = upstream_key(upstream.runnable)
    if key is not None:
        headers = CIMultiDict(headers or {})
        for name in CREDENTIALS:
            headers.popall(name, None)
        headers["Authorization"] = f"Bearer {key}"
    attempt = Attempt()
    # timeouts.responseHeader (0 = no limit): how long the answer's headers may take, as
    # Go's http.Transport.ResponseHeaderTimeout (internal/process/process_command.go, llama-swap).
    wait = upstream.runnable.timeouts.responseHeader or None
    try:
        return await _headers(
            upstream,
            wait,
            upstream.pool.session.request(
                method,
                upstream.url(path_qs),
                headers=headers,
                data=body,
                allow_redirects=False,
                trace_request_ctx=attempt,
            ),
        )
    except (aiohttp.ClientError, OSError) as exc:
        if not (attempt.reused and isinstance(exc, aiohttp.ClientConnectionError)):
            raise await failure(upstream, "did not answer", exc) from None
    try:
        return await _headers(
            upstream,
            wait,
            upstream.pool.fresh_session.request(
                method, upstream.url(path_qs), headers=headers, data=body, allow_redirects=False
            ),
        )
    except (aiohttp.ClientError, OSError) as exc:
        raise await failure(upstream, "did not answer", exc) from None


async def _headers(
    upstream: Upstream, wait: float | None, sending: Awaitable[aiohttp.ClientResponse]
) -> aiohttp.ClientResponse:
    """The answer `sending` gets, once its headers are in; `UpstreamFailed` after `wait` s."""
    try:
        async with asyncio.timeout(wait):
            return await sending
    except TimeoutError:
        what = f"sent no response headers within {wait:g} s (timeouts.responseHeader)"
        raise await failure(upstream, what, TimeoutError()) from None


def upstream_key(runnable: Runnable) -> str | None:
    """The key the model's llama-server checks, when its command gives one: the (first) value of
    `--api-key`, else of `LLAMA_API_KEY` in the model's `env` (common/arg.cpp). The proxy sends it
    in place of the client's, which the proxy checks itself against `apiKeys`."""
    value = None
    argv = runnable.argv
    for i, arg in enumerate(argv):
        name, eq, given = arg.partition("=")
        if name == "--api-key":
            value = given if eq else (argv[i + 1] if i + 1 < len(argv) else None)
    if value is None:
        value = dict(runnable.env).get("LLAMA_API_KEY")
    keys = [key.strip() for key in (value or "").split(",") if key.strip()]
    return keys[0] if keys else None


async def failure(upstream: Upstream, what: str, exc: BaseException) -> UpstreamFailed:
    """The error for an exchange with `upstream` that broke (`what`: how), with the process's
    last output."""
    message = f"model {upstream.id!r} {what}: {exc or type(exc).__name__}"
    return UpstreamFailed(message, await upstream.last_words())


async def forward(
    request: web.Request,
    upstream: Upstream,
    *,
    path_qs: str,
    body: bytes | None,
    drop_credentials: bool,
    prepared: web.StreamResponse | None = None,
) -> tuple[web.StreamResponse, Outcome]:
    """Pass the request to the upstream and stream its answer back as it arrives.

    A client that goes away (the handler is cancelled, or a write fails) closes the upstream
    connection instead of returning it to the pool, which is how llama-server learns to stop
    generating.

    `prepared` is an event stream already begun (loading progress): the answer's events follow
    in it, and an answer that is not a 200 becomes one error event there.
    """
    answer = await open_upstream(
        upstream,
        request.method,
        path_qs,
        headers=request_headers(request.headers, drop_credentials=drop_credentials),
        body=body,
    )
    try:
        if prepared is not None:
            return prepared, await _continue(prepared, answer, upstream)
        response = web.StreamResponse(status=answer.status, reason=answer.reason)
        response.headers.extend(response_headers(answer.headers))
        event_stream = is_event_stream(answer.headers.get("Content-Type", ""))
        if event_stream:
            response.headers["X-Accel-Buffering"] = "no"
            response.headers.setdefault("Cache-Control", "no-cache")
        elif "Content-Length" in answer.headers and request.method != "HEAD":
            response.content_length = int(answer.headers["Content-Length"])
        outcome = Outcome(answer.status)
        readable = "Content-Encoding" not in answer.headers
        tokens = TokenReader(event_stream) if readable else None
        start = None
        if event_stream and readable and answer.status == 200 and request.path in MESSAGES:
            start = MessageStart(upstream.id)
        await response.prepare(request)
        try:
            async for chunk in answer.content.iter_any():
                if start is not None:
                    chunk = start.feed(chunk)
                    if not start.done:
                        continue
                    start = None
                if tokens is not None:
                    tokens.feed(chunk)
                await response.write(chunk)
            if start is not None:
                chunk = start.flush()
                if tokens is not None:
                    tokens.feed(chunk)
                await response.write(chunk)
        except (aiohttp.ClientPayloadError, aiohttp.ClientConnectionError) as exc:
            # Only reading can raise these (writes to the client raise ConnectionResetError).
            outcome.broken = True
            message = (await failure(upstream, "failed mid-answer", exc)).text()
            answer.close()
            if start is not None:
                await response.write(start.flush())
            if event_stream:
                # llama-server's own way of reporting an error after the first event.
                error = {"error": {"message": message, "type": "upstream_error", "code": 502}}
                await response.write(b"data: " + encode(error) + b"\n\n")
            elif request.transport is not None:
                # A body cut short must not look complete: drop the connection.
                request.transport.abort()
            return response, outcome
        if tokens is not None:
            outcome.tokens = tokens.close()
        await response.write_eof()
        return response, outcome
    except BaseException:
        answer.close()
        raise
    finally:
        answer.release()


async def _continue(
    response: web.StreamResponse, answer: aiohttp.ClientResponse, upstream: Upstream
) -> Outcome:
    """The upstream's answer written on into an event stream already begun."""
    outcome = Outcome(answer.status)
    tokens = TokenReader(event_stream=True)
    try:
        if answer.status != 200:
            text = (await answer.read()).decode("utf-8", "replace")
            try:
                error = json.loads(text)
            except ValueError:
                error = {"error": {"message": text, "type": "upstream_error", "code": answer.status}}
            await response.write(b"data: " + encode(error) + b"\n\n")
        else:
            async for chunk in answer.content.iter_any():
                tokens.feed(chunk)
                await response.write(chunk)
    except (aiohttp.ClientPayloadError, aiohttp.ClientConnectionError) as exc:
        outcome.broken = True
        message = (await failure(upstream, "failed mid-answer", exc)).text()
        error = {"error": {"message": message, "type": "upstream_error", "code": 502}}
        await response.write(b"data: " + encode(error) + b"\n\n")
        return outcome
    outcome.tokens = tokens.close()
    await response.write_eof()
    return outcome
