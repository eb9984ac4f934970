"""The requests a smoke run makes of one model, one function per check: each returns what it
measured, or raises Failed saying what was wrong with the answer."""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from halogen.smoke.client import Endpoint, Failed, loads

# A prompt long enough that prompt processing shows in the figures (~100 tokens), asking for
# an answer long enough to time generation. Each request starts with its own nonce, so
# llama-server's prompt cache never answers it from a previous run.
PROMPT = (
    "You are checking that a language model server works. Read this paragraph and then do the "
    "task at its end. A llama is a domesticated South American camelid, widely used as a meat "
    "and pack animal by Andean cultures since pre-Columbian times. Llamas are social animals "
    "and live with others as a herd. Their wool is soft and contains only a small amount of "
    "lanolin. Llamas can learn simple tasks after a few repetitions. Task: count from one to "
    "twenty in words, separated by commas."
)
MAX_TOKENS = 32
EMBEDDED = "halogen smoke test: is this endpoint serving embeddings?"
QUERY = "What is a llama?"
DOCUMENTS = ("A llama is a South American camelid used as a pack animal.", "Paris is the capital of France.")


@dataclass
class Measured:
    """What one check saw: when the answer's headers came (after sending), and for a streamed
    chat the time to its first token and the speeds."""

    headers_at: float | None = None
    ttft: float | None = None
    prompt_tps: float | None = None
    generation_tps: float | None = None
    speed_from: str | None = None


def _messages() -> list[dict[str, str]]:
    return [{"role": "user", "content": f"[{secrets.token_hex(4)}] {PROMPT}"}]


def _object(value: Any, what: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise Failed(f"the answer is not {what}: {json.dumps(value)[:120]}")
    return value


def speeds(timings: Any) -> tuple[float | None, float | None]:
    """Prompt and generation tokens per second from llama-server's `timings` (its
    `*_per_second`, else `*_n` over `*_ms`: server_slot_stats::to_json in
    tools/server/server-common.cpp)."""
    if not isinstance(timings, Mapping):
        return None, None

    def rate(prefix: str) -> float | None:
        given = timings.get(f"{prefix}_per_second")
        if isinstance(given, int | float) and given > 0:
            return float(given)
        n, ms = timings.get(f"{prefix}_n"), timings.get(f"{prefix}_ms")
        if isinstance(n, int | float) and isinstance(ms, int | float) and n > 0 and ms > 0:
            return float(n) * 1000.0 / float(ms)
        return None

    return rate("prompt"), rate("predicted")


async def openai_chat(endpoint: Endpoint, model: str) -> Measured:
    body = {"model": model, "messages": _messages(), "max_tokens": MAX_TOKENS, "stream": False}
    answer = await endpoint.post("/v1/chat/completions", body)
    data = _object(answer.body, "a chat completion")
    choices = data.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], Mapping):
        raise Failed(f"no choices in the chat completion: {json.dumps(data)[:120]}")
    message = choices[0].get("message")
    if not isinstance(message, Mapping):
        raise Failed("the first choice has no message")
    usage = data.get("usage")
    generated = usage.get("completion_tokens") if isinstance(usage, Mapping) else None
    if not (
        message.get("content") or message.get("reasoning_content") or message.get("tool_calls") or generated
    ):
        raise Failed("the model generated nothing")
    return Measured(headers_at=answer.headers_at)


async def openai_chat_stream(endpoint: Endpoint, model: str) -> Measured:
    """A streamed chat: its time to the first token (content or reasoning), and the speeds from
    the last event's `timings`, else from `usage` and the wall time."""
    body = {
        "model": model,
        "messages": _messages(),
        "max_tokens": MAX_TOKENS,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    path = "/v1/chat/completions"
    async with endpoint.request("POST", path, body) as (response, started):
        measured = Measured(headers_at=time.monotonic() - started)
        done = False
        usage: Mapping[str, Any] | None = None
        timings: Any = None
        async for line in endpoint.lines(response):
            if not line.startswith(b"data:"):
                continue
            payload = line[5:].strip()
            if payload == b"[DONE]":
                done = True
                break
            try:
                event = loads(payload)
            except ValueError:
                raise Failed(
                    f"a stream event is not JSON: {payload[:120].decode('utf-8', 'replace')}"
                ) from None
            event = _object(event, "a chat completion chunk")
            if "error" in event:
                raise Failed(f"the stream carried an error: {json.dumps(event['error'])[:160]}")
            choices = event.get("choices")
            if isinstance(choices, list) and choices and isinstance(choices[0], Mapping):
                delta = choices[0].get("delta")
                if (
                    measured.ttft is None
                    and isinstance(delta, Mapping)
                    and (delta.get("content") or delta.get("reasoning_content") or delta.get("tool_calls"))
                ):
                    measured.ttft = time.monotonic() - started
            if isinstance(event.get("usage"), Mapping):
                usage = event["usage"]
            if event.get("timings") is not None:
                timings = event["timings"]
        ended = time.monotonic() - started
    if not done:
        raise Failed("the stream ended without `data: [DONE]`")
    if measured.ttft is None:
        raise Failed("the stream carried no token")
    prompt, generation = speeds(timings)
    if prompt is not None or generation is not None:
        measured.prompt_tps, measured.generation_tps, measured.speed_from = prompt, generation, "timings"
    elif usage is not None:
        measured.prompt_tps, measured.generation_tps = _from_usage(usage, measured.ttft, ended)
        measured.speed_from = "usage"
    return measured


def _from_usage(usage: Mapping[str, Any], ttft: float, ended: float) -> tuple[float | None, float | None]:
    """Without llama-server's timings: the prompt over the time to the first token, the tokens
    after the first over the time after it (both include the network: a lower bound)."""
    prompt, generated = usage.get("prompt_tokens"), usage.get("completion_tokens")
    prompt_tps = float(prompt) / ttft if isinstance(prompt, int) and prompt > 0 and ttft > 0 else None
    after = ended - ttft
    generation_tps = (
        float(generated - 1) / after if isinstance(generated, int) and generated > 1 and after > 0 else None
    )
    return prompt_tps, generation_tps


def _ollama_body(model: str, stream: bool) -> dict[str, Any]:
    return {"model": model, "messages": _messages(), "stream": stream, "options": {"num_predict": MAX_TOKENS}}


def _ollama_said(data: Mapping[str, Any]) -> bool:
    message = data.get("message")
    return isinstance(message, Mapping) and bool(
        message.get("content") or message.get("thinking") or message.get("tool_calls")
    )


async def ollama_chat(endpoint: Endpoint, model: str) -> Measured:
    answer = await endpoint.post("/api/chat", _ollama_body(model, False))
    data = _object(answer.body, "an Ollama chat answer")
    if "error" in data:
        raise Failed(f"the answer is an error: {json.dumps(data['error'])[:160]}")
    if data.get("done") is not True:
        raise Failed("the answer is not `done`")
    if not _ollama_said(data) and not data.get("eval_count"):
        raise Failed("the model generated nothing")
    return Measured(headers_at=answer.headers_at)


async def ollama_chat_stream(endpoint: Endpoint, model: str) -> Measured:
    """Ollama's NDJSON stream: one JSON object a line, the last `done: true`."""
    async with endpoint.request("POST", "/api/chat", _ollama_body(model, True)) as (response, started):
        measured = Measured(headers_at=time.monotonic() - started)
        said = done = False
        async for line in endpoint.lines(response):
            if not line.strip():
                continue
            try:
                data = _object(loads(line), "an Ollama chat chunk")
            except ValueError:
                raise Failed(f"a stream line is not JSON: {line[:120].decode('utf-8', 'replace')}") from None
            if "error" in data:
                raise Failed(f"the stream carried an error: {json.dumps(data['error'])[:160]}")
            said = said or _ollama_said(data)
            if data.get("done") is True:
                done = True
                break
    if not done:
        raise Failed("the stream ended without a `done` line")
    if not said:
        raise Failed("the stream carried no token")
    return measured


async def embeddings(endpoint: Endpoint, model: str) -> Measured:
    answer = await endpoint.post("/v1/embeddings", {"model": model, "input": EMBEDDED})
    data = _object(answer.body, "an embeddings answer").get("data")
    first = data[0] if isinstance(data, list) and data and isinstance(data[0], Mapping) else {}
    vector = first.get("embedding")
    if not isinstance(vector, list) or not vector or not all(isinstance(x, int | float) for x in vector):
        raise Failed("the answer holds no embedding vector")
    return Measured(headers_at=answer.headers_at)


async def rerank(endpoint: Endpoint, model: str) -> Measured:
    """llama-server's `/v1/rerank` (Jina's shape, format_response_rerank in
    tools/server/server-common.cpp): a relevance score for each document."""
    body = {"model": model, "query": QUERY, "documents": list(DOCUMENTS)}
    answer = await endpoint.post("/v1/rerank", body)
    results = _object(answer.body, "a rerank answer").get("results")
    if (
        not isinstance(results, list)
        or len(results) != len(DOCUMENTS)
        or not all(
            isinstance(r, Mapping) and isinstance(r.get("relevance_score"), int | float) for r in results
        )
    ):
        raise Failed(f"the answer does not score each of the {len(DOCUMENTS)} documents")
    return Measured(headers_at=answer.headers_at)


Run = Callable[[Endpoint, str], Awaitable[Measured]]
BY_NAME: Mapping[str, Run] = {
    "openai-chat": openai_chat,
    "openai-chat-stream": openai_chat_stream,
    "ollama-chat": ollama_chat,
    "ollama-chat-stream": ollama_chat_stream,
    "embeddings": embeddings,
    "rerank": rerank,
}
