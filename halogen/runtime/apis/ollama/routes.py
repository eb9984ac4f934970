"""Ollama's routes: the I/O around the pure translation beside it (`to_openai`, `answers`,
`stream`, `catalogue`, `durations`).

Requests go through the same Swapper (groups, limits, ttl) and the same pooled upstream client
as the OpenAI routes; errors are raised and come out of `middleware.error_middleware` as
Ollama's `{"error": "..."}`. Only a failure after a stream has begun is written here, as the
stream's last line, since its status is already sent.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from multidict import CIMultiDict, MultiMapping

from halogen.llamacpp import cmdline
from halogen.llamaswap.resolved import PeerRoute, Runnable
from halogen.runtime.apis.ollama import answers, catalogue, durations, to_openai
from halogen.runtime.apis.ollama import stream as streams
from halogen.runtime.apis.ollama.pull import pull
from halogen.runtime.base import locked, shapes
from halogen.runtime.base.errors import (
    BadRequest,
    NotSupported,
    Refusal,
    TooLarge,
    UpstreamAnswered,
    UpstreamFailed,
)
from halogen.runtime.base.metrics import token_counts
from halogen.runtime.forward import jsonbody, peers, proxy, relay
from halogen.runtime.forward.context import MODEL, read_json, runtime_of
from halogen.runtime.forward.loading import LOADING_PATHS, Loading
from halogen.runtime.forward.naming import Named
from halogen.runtime.process.upstream import State

Json = dict[str, Any]
Respond = Callable[[str, Mapping[str, Any], int, int], Json]
StreamFactory = Callable[[str, int, int], "streams.ChatStream | streams.GenerateStream"]

NDJSON = "application/x-ndjson"


def register(application: web.Application) -> None:
    router = shapes.Routes(application, shapes.ollama)
    router.claim("/api/")  # an Ollama client's request for a route halogen lacks
    router.add_get("/", root)
    router.add_get("/api/version", version)
    router.add_get("/api/tags", tags)
    router.add_post("/api/show", show)
    router.add_get("/api/ps", ps)
    router.add_post("/api/chat", chat)
    router.add_post("/api/generate", generate)
    router.add_post("/api/embed", embed)
    router.add_post("/api/embeddings", embeddings)
    router.add_post("/api/pull", pull)
    for path in ("/api/push", "/api/create", "/api/copy"):
        router.add_post(path, not_supported)
    router.add_delete("/api/delete", not_supported)
    router.add_route("*", "/api/blobs/{digest}", not_supported)


# --- listings -----------------------------------------------------------------------------


async def root(request: web.Request) -> web.Response:
    return web.Response(text="Ollama is running")


async def version(request: web.Request) -> web.Response:
    # `configVersion`, beside Ollama's own field: the sha256 of the config serve runs (after a
    # reload, the new one's), which `halogen smoke --config-version` waits for.
    return web.json_response(
        {**catalogue.version(), "configVersion": runtime_of(request).resolved.config_version}
    )


def file_facts(runnable: Runnable) -> tuple[int, datetime | None]:
    """(size in bytes, modification time) of the model's file; (0, None) when unreadable."""
    path = cmdline.of_command(runnable.argv, runnable.env).model
    if path is None:
        return locked.file_size(runnable) or 0, None
    try:
        facts = Path(path).stat()
    except OSError:
        return locked.file_size(runnable) or 0, None
    return facts.st_size, datetime.fromtimestamp(facts.st_mtime, UTC)


async def tags(request: web.Request) -> web.Response:
    resolved = runtime_of(request).resolved
    models = list(resolved.models.values())
    facts = {m.id: file_facts(m) for m in models}
    sizes = {mid: size for mid, (size, _) in facts.items()}
    modified = {mid: when for mid, (_, when) in facts.items() if when is not None}
    listing = catalogue.tags(models, sizes, modified=modified)
    # Selectors, listed like their first target, under their own name and description.
    for sid, selector in sorted(resolved.selectors.items()):
        if selector.unlisted:
            continue
        first = resolved.models[selector.models[0]]
        entry = catalogue.tags([replace(first, id=sid, unlisted=False)], {sid: sizes.get(first.id, 0)})[
            "models"
        ][0]
        entry["description"] = selector.description or selector.name
        listing["models"].append(entry)
    listing["models"].sort(key=lambda m: str(m["name"]))
    # Peers' models too, after the local ones, by their qualified names, so Ollama clients see them.
    listing["models"] += [catalogue.peer_tag(name) for name in resolved.peer_names]
    return web.json_response(listing)


async def show(request: web.Request) -> web.Response:
    runtime = runtime_of(request)
    body = await read_json(request)
    name = to_openai.model_name(body)
    named = runtime.naming.named(name)
    if named.peer is not None:
        return web.json_response(catalogue.peer_show(named.name, named.peer.peer))
    runnable = runtime.resolved.models[named.model_id]
    size, modified = file_facts(runnable)
    answer = catalogue.show(runnable, size, modified_at=modified)
    # The model file's path comes from the command, which may hold a value from `${env.…}`.
    answer["modelfile"] = runtime.logs.redact(answer["modelfile"])
    return web.json_response(answer)


async def ps(request: web.Request) -> web.Response:
    runtime = runtime_of(request)
    rows = []
    for row in runtime.swapper.running():
        if row.state is not State.READY:
            continue
        runnable = runtime.resolved.models[row.model]
        expires = None if row.expires_at is None else datetime.fromtimestamp(row.expires_at, UTC)
        rows.append(catalogue.RunningModel(runnable, file_facts(runnable)[0], expires))
    return web.json_response(catalogue.ps(rows))


async def not_supported(request: web.Request) -> web.Response:
    action = request.path.removeprefix("/api/").split("/")[0]
    raise NotSupported(f"{action} is not supported: halogen serves the models its config lists")


# --- inference ----------------------------------------------------------------------------


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


async def _load_or_unload(request: web.Request, asked: Asked, empty: Json) -> web.Response:
    """Ollama's way to manage memory: a request with nothing to generate loads the model, or
    unloads it when `keep_alive` is 0."""
    if asked.peer is not None:
        raise NotSupported(
            f"{asked.name!r} is a model of peer {asked.peer.peer!r}, which loads and unloads it"
        )
    swapper = runtime_of(request).swapper
    if asked.keep_alive == 0:
        await swapper.unload(asked.model_id)
        reason = "unload"
    else:
        await swapper.ensure(asked.model_id, asked.keep_alive)
        reason = "load"
    return web.json_response(
        {"model": asked.name, "created_at": _now(), **empty, "done": True, "done_reason": reason}
    )


@dataclass(frozen=True)
class Asked:
    """An inference request on an Ollama route: its body, the name it used for the model (the
    answer repeats it), the model id that name resolves to, and when it arrived."""

    body: Json
    name: str
    model_id: str
    started: int  # time.time_ns()
    keep_alive: float | None  # seconds the model stays up once idle; None: the config's ttl
    peer: PeerRoute | None = None  # a peer's model (`model_id` is then `<peer>/<model>`)
    target: str = ""  # the name a profile pinned or a selector chose for it (`Named.name`)


async def _asked(request: web.Request) -> Asked:
    started = time.time_ns()
    body = await read_json(request)
    name = to_openai.model_name(body)
    runtime = runtime_of(request)
    named = runtime.naming.named(name, request)  # a missing or unknown name is refused here
    assert name is not None
    request[MODEL] = named.model_id
    try:
        keep_alive = durations.keep_alive(body.get("keep_alive"))
    except durations.BadKeepAlive as exc:
        raise BadRequest(str(exc)) from None
    return Asked(body, name, named.model_id, started, keep_alive, named.peer, named.name)


async def chat(request: web.Request) -> web.StreamResponse:
    asked = await _asked(request)
    if not asked.body.get("messages"):
        message = {"message": {"role": "assistant", "content": ""}}
        return await _load_or_unload(request, asked, message)
    return await _translate(
        request,
        asked,
        "/v1/chat/completions",
        to_openai.chat_to_openai(asked.body),
        streams.ChatStream,
        answers.chat_response,
    )


async def generate(request: web.Request) -> web.StreamResponse:
    asked = await _asked(request)
    if not asked.body.get("prompt") and not asked.body.get("images"):
        return await _load_or_unload(request, asked, {"response": ""})
    return await _translate(
        request,
        asked,
        "/v1/completions",
        to_openai.generate_to_openai(asked.body),
        streams.GenerateStream,
        answers.generate_response,
    )


async def embed(request: web.Request) -> web.StreamResponse:
    return await _embed(request, answers.embed_response)


async def embeddings(request: web.Request) -> web.StreamResponse:
    return await _embed(request, lambda name, data, started, load: answers.embeddings_response(name, data))


async def _embed(request: web.Request, respond: Respond) -> web.StreamResponse:
    asked = await _asked(request)
    translated = to_openai.embed_to_openai(asked.body)
    return await _translate(request, asked, "/v1/embeddings", translated, None, respond)


async def _translate(
    request: web.Request,
    asked: Asked,
    path: str,
    translated: Json,
    stream: StreamFactory | None,
    respond: Respond,
) -> web.StreamResponse:
    """Send the translated request to the model and translate its answer back, streaming
    NDJSON as SSE arrives when the request streams."""
    model_id, name = asked.model_id, asked.name
    runtime = runtime_of(request)
    if asked.peer is not None:
        # The peer sees its own name for the model and the peer's filters.
        payload = peers.rewrite(asked.peer, translated)
        return await _held(request, asked, path, payload, stream, respond, None)
    runnable = runtime.resolved.models[model_id]
    # The upstream sees the model id, then the config's own rewrites, as on OpenAI routes
    # (the `setParamsByID` entry of the name the request goes on with).
    translated["model"] = model_id
    payload = proxy.rewrite(runnable, translated, asked.target) or translated
    streaming = stream is not None and bool(payload.get("stream"))
    progress = None
    if (
        streaming
        and runnable.send_loading_state
        and path in LOADING_PATHS
        and runtime.swapper.slot(model_id).phase is not State.READY
    ):
        progress = await Loading.begin(
            request, model_id, thinking_frame(name), NDJSON, runtime.swapper.position_reader()
        )
    try:
        return await _held(request, asked, path, payload, stream, respond, progress)
    except Refusal as exc:
        if progress is None:
            raise
        # The stream has begun with a 200: the failure is its last line.
        await progress.stop()
        await progress.response.write(proxy.encode(answers.error(exc.text())) + b"\n")
        await progress.response.write_eof()
        return progress.response
    finally:
        if progress is not None:
            await progress.stop()


def thinking_frame(name: str) -> Callable[[str], bytes]:
    """Loading progress as lines of an Ollama chat stream, in the message's `thinking`."""

    def frame(text: str) -> bytes:
        line = {
            "model": name,
            "created_at": answers.rfc3339_ns(time.time_ns()),
            "message": {"role": "assistant", "content": "", "thinking": text},
            "done": False,
        }
        return proxy.encode(line) + b"\n"

    return frame


async def _held(
    request: web.Request,
    asked: Asked,
    path: str,
    payload: Json,
    stream: StreamFactory | None,
    respond: Respond,
    progress: Loading | None,
) -> web.StreamResponse:
    name, started = asked.name, asked.started
    runtime = runtime_of(request)
    streaming = stream is not None and bool(payload.get("stream"))
    headers = upstream_headers(request.headers, bool(runtime.resolved.api_keys))
    named = Named(asked.model_id, asked.target, asked.peer)
    async with runtime.reaching(request, named, asked.keep_alive, progress) as (counted, target, load_ns):
        body = proxy.encode(payload)
        relay.sent(request, body)
        answer = await target.open("POST", path, headers, body)
        try:
            if answer.status != 200:
                counted.status = answer.status
                try:
                    message = await _upstream_error(answer)
                except (aiohttp.ClientPayloadError, aiohttp.ClientConnectionError) as exc:
                    raise await target.failed("failed mid-answer", exc) from None
                answer.release()  # read to its end: the connection goes back to the pool
                raise UpstreamAnswered(answer.status, message)
            if streaming:
                assert stream is not None
                response, outcome = await relay.translated(
                    request,
                    target,
                    answer,
                    relay.Ndjson(stream(name, started, load_ns)),
                    prepared=None if progress is None else progress.response,
                )
                counted.took(outcome)
                return response
            try:
                data = await answer.json(content_type=None)
            except (ValueError, aiohttp.ClientPayloadError) as exc:
                raise await target.failed("sent no JSON answer", exc) from None
            counted.tokens = token_counts(data)
            if isinstance(data, dict) and isinstance(data.get("timings"), dict):
                counted.timings = data["timings"]
            try:
                translated_answer = respond(name, data, started, load_ns)
            except answers.Untranslatable as exc:
                raise UpstreamFailed(str(exc)) from None
            counted.status = 200
            return web.json_response(translated_answer)
        except BaseException:
            answer.close()
            raise
        finally:
            answer.release()


def upstream_headers(headers: MultiMapping[str], drop_credentials: bool) -> CIMultiDict[str]:
    """The client's end-to-end headers (tracing and the like, a repeated one with every value),
    for a body that is now JSON and an answer this side must be able to read."""
    out = proxy.request_headers(headers, drop_credentials=drop_credentials)
    for name in ("Content-Type", "Content-Encoding", "Accept-Encoding", "Accept"):
        out.popall(name, None)
    out["Content-Type"] = "application/json"
    out["Accept-Encoding"] = "identity"
    return out


async def _upstream_error(answer: aiohttp.ClientResponse) -> str:
    raw = await answer.read()
    try:
        data = jsonbody.parse(raw)
    except (BadRequest, TooLarge):
        return raw.decode("utf-8", "replace").strip() or f"upstream answered {answer.status}"
    return answers.error_message(data)
