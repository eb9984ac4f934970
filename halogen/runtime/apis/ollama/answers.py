"""llama-server's OpenAI answers turned into Ollama's, whole (chat, generate, embed), and the
pieces every Ollama answer shares (times, token counts, the `done` fields, errors); pure.

Times: `started_ns` is `time.time_ns()` when the request arrived (wall clock, because the
answers carry `created_at`); `load_ns` is how long the request waited for its model to start.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

Clock = Callable[[], int]
Json = dict[str, Any]


def error(message: str) -> Json:
    return {"error": message}


def rfc3339_ns(ns: int) -> str:
    seconds, fraction = divmod(ns, 1_000_000_000)
    stamp = datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{stamp}.{fraction:09d}Z"


def rfc3339(moment: datetime) -> str:
    moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    stamp = moment.strftime("%Y-%m-%dT%H:%M:%S")
    if moment.microsecond:
        stamp += f".{moment.microsecond:06d}".rstrip("0")
    return stamp + "Z"


def int_or_none(value: Any) -> int | None:
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def ms_to_ns(value: Any) -> int | None:
    return round(value * 1_000_000) if isinstance(value, int | float) else None


class Untranslatable(ValueError):
    """An upstream answer that has no Ollama equivalent (not a completion, broken tool call)."""


def tool_call(index: int, call_id: str, name: str, arguments: Any) -> Json:
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments) if arguments.strip() else {}
        except ValueError:
            raise Untranslatable(
                f"tool call {name!r} has arguments that are not JSON: {arguments!r}"
            ) from None
    if not isinstance(arguments, dict):
        raise Untranslatable(f"tool call {name!r} has arguments that are not an object: {arguments!r}")
    function: Json = {"index": index, "name": name, "arguments": arguments}
    return {"id": call_id, "function": function} if call_id else {"function": function}


@dataclass
class Metrics:
    """What the final answer reports, from llama-server's `timings`, else `usage`, else the clock."""

    started_ns: int
    load_ns: int
    first_token_ns: int | None = None
    timings: Mapping[str, Any] | None = None
    usage: Mapping[str, Any] | None = None

    def seen(self, chunk: Mapping[str, Any]) -> None:
        if isinstance(chunk.get("timings"), Mapping):
            self.timings = chunk["timings"]
        if isinstance(chunk.get("usage"), Mapping):
            self.usage = chunk["usage"]

    def fields(self, now: int) -> Json:
        timings = self.timings or {}
        usage = self.usage or {}
        prompt_n = int_or_none(timings.get("prompt_n"))
        if prompt_n is not None:
            prompt_count = prompt_n + (int_or_none(timings.get("cache_n")) or 0)
        else:
            prompt_count = int_or_none(usage.get("prompt_tokens")) or 0
        eval_count = int_or_none(timings.get("predicted_n"))
        if eval_count is None:
            eval_count = int_or_none(usage.get("completion_tokens")) or 0
        prompt_duration = ms_to_ns(timings.get("prompt_ms"))
        eval_duration = ms_to_ns(timings.get("predicted_ms"))
        first = self.first_token_ns
        if prompt_duration is None:
            prompt_duration = max(0, first - self.started_ns - self.load_ns) if first else 0
        if eval_duration is None:
            eval_duration = max(0, now - first) if first else 0
        return {
            "total_duration": max(0, now - self.started_ns),
            "load_duration": max(0, self.load_ns),
            "prompt_eval_count": prompt_count,
            "prompt_eval_duration": prompt_duration,
            "eval_count": eval_count,
            "eval_duration": eval_duration,
        }


def done_fields(reason: Any, metrics: Metrics, now: int) -> Json:
    """The fields that end every answer, streamed or not, after its content."""
    return {
        "done_reason": reason if isinstance(reason, str) and reason else "stop",
        "done": True,
        **metrics.fields(now),
    }


def ndjson_line(obj: Json) -> bytes:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"


def error_message(payload: Any) -> str:
    """The message of an OpenAI-style error body (`{"error": {"message": ...}}`, or looser)."""
    err = payload.get("error", payload) if isinstance(payload, Mapping) else payload
    if isinstance(err, Mapping):
        return str(err.get("message") or json.dumps(err))
    return str(err)


def _first_choice(upstream: Mapping[str, Any]) -> Mapping[str, Any]:
    choices = upstream.get("choices")
    if not choices or not isinstance(choices[0], Mapping):
        if "error" in upstream:
            raise Untranslatable(error_message(upstream))
        raise Untranslatable("upstream answer has no choices")
    return choices[0]


def _answered(upstream: Mapping[str, Any], started_ns: int, load_ns: int) -> Metrics:
    metrics = Metrics(started_ns, load_ns)
    metrics.seen(upstream)
    return metrics


def chat_response(
    model: str, upstream: Mapping[str, Any], started_ns: int, load_ns: int, *, clock: Clock = time.time_ns
) -> Json:
    """A `/v1/chat/completions` answer as an `/api/chat` answer; `Untranslatable` if it is none."""
    choice = _first_choice(upstream)
    source = choice.get("message") or {}
    message: Json = {"role": "assistant", "content": source.get("content") or ""}
    if source.get("reasoning_content"):
        message["thinking"] = source["reasoning_content"]
    calls = source.get("tool_calls") or []
    if calls:
        message["tool_calls"] = [
            tool_call(
                i,
                c.get("id") or "",
                (c.get("function") or {}).get("name") or "",
                (c.get("function") or {}).get("arguments"),
            )
            for i, c in enumerate(calls)
        ]
    now = clock()
    return {
        "model": model,
        "created_at": rfc3339_ns(now),
        "message": message,
        **done_fields(choice.get("finish_reason"), _answered(upstream, started_ns, load_ns), now),
    }


def generate_response(
    model: str, upstream: Mapping[str, Any], started_ns: int, load_ns: int, *, clock: Clock = time.time_ns
) -> Json:
    """A `/v1/completions` answer as an `/api/generate` answer; `Untranslatable` if it is none."""
    choice = _first_choice(upstream)
    now = clock()
    answer: Json = {"model": model, "created_at": rfc3339_ns(now), "response": choice.get("text") or ""}
    if choice.get("reasoning_content"):
        answer["thinking"] = choice["reasoning_content"]
    return {
        **answer,
        **done_fields(choice.get("finish_reason"), _answered(upstream, started_ns, load_ns), now),
    }


def _vectors(upstream: Mapping[str, Any]) -> list[list[float]]:
    data = upstream.get("data")
    if not isinstance(data, list):
        raise Untranslatable(
            error_message(upstream) if "error" in upstream else "upstream answer has no data"
        )
    items = sorted(
        (d for d in data if isinstance(d, Mapping)), key=lambda d: int_or_none(d.get("index")) or 0
    )
    return [list(d.get("embedding") or []) for d in items]


def embed_response(
    model: str,
    upstream: Mapping[str, Any],
    started_ns: int | None = None,
    load_ns: int = 0,
    *,
    clock: Clock = time.time_ns,
) -> Json:
    """A `/v1/embeddings` answer as an `/api/embed` answer."""
    answer: Json = {"model": model, "embeddings": _vectors(upstream)}
    if started_ns is not None:
        answer["total_duration"] = max(0, clock() - started_ns)
        answer["load_duration"] = max(0, load_ns)
    usage = upstream.get("usage")
    answer["prompt_eval_count"] = (
        int_or_none(usage.get("prompt_tokens")) if isinstance(usage, Mapping) else None
    ) or 0
    return answer


def embeddings_response(model: str, upstream: Mapping[str, Any]) -> Json:
    """A `/v1/embeddings` answer as a legacy `/api/embeddings` answer: one vector."""
    vectors = _vectors(upstream)
    return {"embedding": vectors[0] if vectors else []}
