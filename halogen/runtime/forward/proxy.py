"""Sending one request to a model's process: the headers that pass, the body after the config's
filters, the key the model checks. The answer comes back through `forward.relay`."""

from __future__ import annotations

import asyncio
import functools
import json
from collections.abc import Awaitable, Mapping
from typing import Any

import aiohttp
from multidict import CIMultiDict, MultiMapping

from halogen.llamacpp import cmdline
from halogen.llamaswap import names
from halogen.llamaswap.resolved import Runnable
from halogen.runtime.base.errors import UpstreamFailed
from halogen.runtime.process.pool import Attempt
from halogen.runtime.process.upstream import Upstream

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
    for candidate in names.spellings(requested):
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
    """The key the model's llama-server checks, when its command gives one (`--api-key`,
    `--api_key`, `LLAMA_API_KEY`, or the first key of `--api-key-file`, which the runtime reads as
    llama-server does: halogen.llamacpp.cmdline). The proxy sends it in place of the client's,
    which the proxy checks itself against `apiKeys`."""
    return _key(runnable.argv, runnable.env)


@functools.lru_cache(maxsize=256)
def _key(argv: tuple[str, ...], env: tuple[tuple[str, str], ...]) -> str | None:
    # Read once per command, as llama-server reads its key file once, at start: the runtime and
    # its models share the file system.
    line = cmdline.of_command(argv, env)
    if line.api_key is not None:
        return line.api_key
    for path in line.api_key_files:
        try:
            with open(path, encoding="utf-8") as handle:
                key = cmdline.first_key(handle.read())
        except (OSError, UnicodeDecodeError):
            continue
        if key is not None:
            return key
    return None


async def failure(upstream: Upstream, what: str, exc: BaseException) -> UpstreamFailed:
    """The error for an exchange with `upstream` that broke (`what`: how), with the process's
    last output."""
    message = f"model {upstream.id!r} {what}: {exc or type(exc).__name__}"
    return UpstreamFailed(message, await upstream.last_words())
