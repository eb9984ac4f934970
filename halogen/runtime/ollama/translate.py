"""Ollama's API on top of llama-server's OpenAI API: requests one way, answers the other.

Pure translation, dicts and bytes in, dicts and bytes out; `routes.py` beside it does the I/O.
Where llama-swappo and the real Ollama server differ, this follows Ollama and the official
`ollama` Python client (whose pydantic types the tests validate every answer against).

Times: `started_ns` is `time.time_ns()` when the request arrived (wall clock, because the
answers carry `created_at`); `load_ns` is how long the request waited for its model to start.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from halogen.llamacpp import cmdline
from halogen.llamaswap.resolved import Runnable
from halogen.runtime import locked
from halogen.runtime.errors import clip
from halogen.runtime.lines import LineSplitter

# A recent Ollama release: clients gate features on it (some want >= 0.6.4 for capabilities).
OLLAMA_VERSION = "0.12.6"

Clock = Callable[[], int]
Json = dict[str, Any]

# Ollama option → llama-server field. The first five after max_tokens are OpenAI names; the rest
# are llama-server extensions its OpenAI endpoints accept. Load-time options (num_ctx, num_gpu,
# num_thread, ...) cannot change a running server and are dropped.
OPTIONS = {
    "num_predict": "max_tokens",
    "temperature": "temperature",
    "top_p": "top_p",
    "seed": "seed",
    "stop": "stop",
    "presence_penalty": "presence_penalty",
    "frequency_penalty": "frequency_penalty",
    "top_k": "top_k",
    "min_p": "min_p",
    "repeat_penalty": "repeat_penalty",
    "repeat_last_n": "repeat_last_n",
    "typical_p": "typical_p",
    "mirostat": "mirostat",
    "mirostat_tau": "mirostat_tau",
    "mirostat_eta": "mirostat_eta",
    "num_keep": "n_keep",
}

# Ollama answers "never expires" with a far-future time; its CLI shows that as "Forever".
NEVER = datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)
UNKNOWN_TIME = datetime(1970, 1, 1, tzinfo=UTC)
# Ollama's own default context, for a model whose config says nothing about its context.
DEFAULT_CONTEXT = 4096

_IMAGE_PREFIXES = (
    ("iVBORw0KGgo", "image/png"),
    ("/9j/", "image/jpeg"),
    ("R0lGOD", "image/gif"),
    ("UklGR", "image/webp"),
    ("Qk", "image/bmp"),
)


def model_name(body: Mapping[str, Any]) -> str | None:
    """The model a request names: `model`, or `name` from older clients."""
    for key in ("model", "name"):
        value = body.get(key)
        if isinstance(value, str) and value.strip():
            return value.strip()
    return None


def error(message: str) -> Json:
    return {"error": message}


class BadKeepAlive(ValueError):
    pass


# Go's time.ParseDuration, which Ollama reads `keep_alive` strings with: "0", or a sign and
# one or more decimal numbers, each with a unit ("1h30m", "-1s", "1.5h", "300ms").
_DURATION = re.compile(r"([-+]?)((?:(?:\d+\.?\d*|\.\d+)(?:ns|us|µs|μs|ms|s|m|h))+)")
_PART = re.compile(r"(\d+\.?\d*|\.\d+)(ns|us|µs|μs|ms|s|m|h)")
FOR_EVER = 1e9  # seconds (about 31 years): longer is for ever, and no expiry date overflows
_SECONDS = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)")
_UNIT_SECONDS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def keep_alive(value: Any) -> float | None:
    """How long a model is to stay loaded after a request, as Ollama reads `keep_alive`: a
    number of seconds or a duration string ("5m", "1h30m", or plain seconds); negative = for ever (`math.inf`); absent or
    null = None (the config's ttl applies). `BadKeepAlive` for anything else."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise BadKeepAlive(
            f"keep_alive must be a number of seconds or a duration like '5m', not {clip(value)}"
        )
    if isinstance(value, str):
        text = value.strip()
        match = _DURATION.fullmatch(text)
        if match is not None:
            seconds = sum(float(n) * _UNIT_SECONDS[u] for n, u in _PART.findall(match.group(2)))
            value = -seconds if match.group(1) == "-" else seconds
        elif _SECONDS.fullmatch(text):  # "0", "-1", "300": seconds, as OLLAMA_KEEP_ALIVE reads them
            value = float(text)
        else:
            raise BadKeepAlive(
                f"keep_alive {clip(value)} is not a duration: write it like '30s', '5m' or '1h30m'"
            )
    if math.isnan(value) or value == math.inf:
        raise BadKeepAlive(f"keep_alive must be finite or negative, not {clip(value)}")
    return math.inf if value < 0 or value >= FOR_EVER else float(value)


def version() -> Json:
    return {"version": OLLAMA_VERSION}


# --- requests: Ollama → OpenAI ---------------------------------------------------------------


def _options(options: Any) -> Json:
    if not isinstance(options, Mapping):
        return {}
    out: Json = {}
    for key, target in OPTIONS.items():
        value = options.get(key)
        if value is None:
            continue
        if key == "num_predict" and isinstance(value, int) and value < 0:
            continue  # -1 (until done) and -2 (fill the context) are llama-server's default
        out[target] = value
    return out


def _stream(body: Mapping[str, Any], out: Json) -> None:
    stream = body.get("stream")
    out["stream"] = True if stream is None else bool(stream)
    if out["stream"]:
        # Without this llama-server sends no token counts in a stream.
        out["stream_options"] = {"include_usage": True}


def _data_url(image: str) -> str:
    if image.startswith("data:"):
        return image
    mime = next((m for prefix, m in _IMAGE_PREFIXES if image.startswith(prefix)), "image/png")
    return f"data:{mime};base64,{image}"


def _arguments_text(arguments: Any) -> str:
    return arguments if isinstance(arguments, str) else json.dumps(arguments, ensure_ascii=False)


def _messages(messages: Sequence[Mapping[str, Any]]) -> list[Json]:
    out: list[Json] = []
    unanswered: list[tuple[str, str]] = []  # (tool call id, function name), oldest first
    for i, message in enumerate(messages):
        role = message.get("role", "user")
        content = message.get("content") or ""
        converted: Json = {"role": role}
        images = [img for img in message.get("images") or [] if isinstance(img, str)]
        if images:
            parts: list[Json] = [{"type": "text", "text": content}] if content else []
            parts += [{"type": "image_url", "image_url": {"url": _data_url(img)}} for img in images]
            converted["content"] = parts
        else:
            converted["content"] = content
        if message.get("thinking"):
            converted["reasoning_content"] = message["thinking"]
        calls = message.get("tool_calls") or []
        if role == "assistant" and calls:
            converted["tool_calls"] = []
            for j, call in enumerate(calls):
                function = call.get("function") or {}
                call_id = call.get("id") or f"call_{i}_{j}"
                name = function.get("name", "")
                converted["tool_calls"].append(
                    {
                        "id": call_id,
                        "type": "function",
                        "function": {
                            "name": name,
                            "arguments": _arguments_text(function.get("arguments") or {}),
                        },
                    }
                )
                unanswered.append((call_id, name))
        if role == "tool":
            tool_name = message.get("tool_name") or message.get("name") or ""
            call_id = message.get("tool_call_id") or ""
            # Ollama names the tool; OpenAI templates want the id of the call it answers.
            match = next((c for c in unanswered if c[0] == call_id), None) if call_id else None
            match = match or next((c for c in unanswered if c[1] == tool_name), None)
            match = match or (unanswered[0] if unanswered and not call_id else None)
            if match:
                unanswered.remove(match)
                call_id = call_id or match[0]
            if call_id:
                converted["tool_call_id"] = call_id
            if tool_name:
                converted["name"] = tool_name
        out.append(converted)
    return out


def chat_to_openai(body: Mapping[str, Any]) -> Json:
    """An `/api/chat` body as a `/v1/chat/completions` body."""
    out: Json = {"model": model_name(body) or "", "messages": _messages(body.get("messages") or [])}
    _stream(body, out)
    out.update(_options(body.get("options")))
    fmt = body.get("format")
    if fmt == "json":
        out["response_format"] = {"type": "json_object"}
    elif isinstance(fmt, Mapping):
        out["response_format"] = {
            "type": "json_schema",
            "json_schema": {"name": "response", "schema": dict(fmt), "strict": True},
        }
    think = body.get("think")
    if isinstance(think, bool):
        out["chat_template_kwargs"] = {"enable_thinking": think}
    elif isinstance(think, str) and think:
        # gpt-oss style levels ("low", "medium", "high"): thinking on, at that effort.
        out["chat_template_kwargs"] = {"enable_thinking": True, "reasoning_effort": think}
        out["reasoning_effort"] = think
    tools = body.get("tools")
    if tools:
        out["tools"] = [{"type": "function", **tool} for tool in tools]
    return out


def generate_to_openai(body: Mapping[str, Any]) -> Json:
    """An `/api/generate` body as a `/v1/completions` body (no chat template: `system` + `prompt`)."""
    prompt = body.get("prompt") or ""
    system = body.get("system") or ""
    out: Json = {"model": model_name(body) or "", "prompt": f"{system}\n\n{prompt}" if system else prompt}
    _stream(body, out)
    out.update(_options(body.get("options")))
    fmt = body.get("format")
    # llama-server's /v1/completions ignores `response_format`; its own `json_schema` works.
    if fmt == "json":
        out["json_schema"] = {"type": "object"}
    elif isinstance(fmt, Mapping):
        out["json_schema"] = dict(fmt)
    return out


def embed_to_openai(body: Mapping[str, Any]) -> Json:
    """An `/api/embed` (`input`) or `/api/embeddings` (`prompt`) body as a `/v1/embeddings` body."""
    out: Json = {"model": model_name(body) or "", "encoding_format": "float"}
    if "input" in body:
        out["input"] = body["input"]
    else:
        out["input"] = body.get("prompt") or ""
        # Ollama normalizes /api/embed vectors but returns /api/embeddings ones raw.
        out["embd_normalize"] = -1
    return out


# --- answers: OpenAI → Ollama ----------------------------------------------------------------


def rfc3339_ns(ns: int) -> str:
    seconds, fraction = divmod(ns, 1_000_000_000)
    stamp = datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{stamp}.{fraction:09d}Z"


def _rfc3339(moment: datetime) -> str:
    moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    stamp = moment.strftime("%Y-%m-%dT%H:%M:%S")
    if moment.microsecond:
        stamp += f".{moment.microsecond:06d}".rstrip("0")
    return stamp + "Z"


def _int(value: Any) -> int | None:
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _ms_to_ns(value: Any) -> int | None:
    return round(value * 1_000_000) if isinstance(value, int | float) else None


class Untranslatable(ValueError):
    """An upstream answer that has no Ollama equivalent (not a completion, broken tool call)."""


def _tool_call(index: int, call_id: str, name: str, arguments: Any) -> Json:
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
class _Metrics:
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
        prompt_n = _int(timings.get("prompt_n"))
        if prompt_n is not None:
            prompt_count = prompt_n + (_int(timings.get("cache_n")) or 0)
        else:
            prompt_count = _int(usage.get("prompt_tokens")) or 0
        eval_count = _int(timings.get("predicted_n"))
        if eval_count is None:
            eval_count = _int(usage.get("completion_tokens")) or 0
        prompt_duration = _ms_to_ns(timings.get("prompt_ms"))
        eval_duration = _ms_to_ns(timings.get("predicted_ms"))
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


def _done(reason: Any, metrics: _Metrics, now: int) -> Json:
    """The fields that end every answer, streamed or not, after its content."""
    return {
        "done_reason": reason if isinstance(reason, str) and reason else "stop",
        "done": True,
        **metrics.fields(now),
    }


def _line(obj: Json) -> bytes:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"


def error_message(payload: Any) -> str:
    """The message of an OpenAI-style error body (`{"error": {"message": ...}}`, or looser)."""
    err = payload.get("error", payload) if isinstance(payload, Mapping) else payload
    if isinstance(err, Mapping):
        return str(err.get("message") or json.dumps(err))
    return str(err)


MAX_EVENT_BYTES = 4 * 1024 * 1024


class _Stream(ABC):
    """llama-server SSE in, Ollama NDJSON out; reads may split events anywhere."""

    def __init__(self, model: str, started_ns: int, load_ns: int, *, clock: Clock = time.time_ns) -> None:
        self.model = model
        self._clock = clock
        self._metrics = _Metrics(started_ns, load_ns)
        # An SSE event longer than this is cut, fails to parse, and ends the stream with an
        # error line: a runaway upstream line must not grow memory without bound.
        self._lines = LineSplitter(max_line=MAX_EVENT_BYTES)
        self._finished = False
        self._done_reason: str | None = None

    def feed(self, data: bytes) -> list[bytes]:
        if self._finished:
            return []
        out: list[bytes] = []
        for line in self._lines.feed(data):
            out += self._sse_line(line)
        return out

    def close(self) -> list[bytes]:
        """The end of the upstream body: flush, and answer `done` if it has not been answered."""
        out = [chunk for line in self._lines.close() for chunk in self._sse_line(line)]
        if not self._finished:
            out += self._finish()
        return out

    def _sse_line(self, line: bytes) -> list[bytes]:
        if self._finished or not line or line.startswith(b":"):
            return []
        field, _, value = line.partition(b":")
        value = value.removeprefix(b" ")
        if field not in (b"data", b"error"):
            return []  # event:, id:, retry:
        text = value.decode("utf-8", "replace").strip()
        if field == b"data" and text == "[DONE]":
            return self._finish()
        try:
            payload = json.loads(text)
        except ValueError:
            if field == b"error":
                return self._fail(text)
            return self._fail(f"upstream sent a line that is not JSON: {text[:200]!r}")
        if field == b"error" or (isinstance(payload, Mapping) and "error" in payload):
            return self._fail(error_message(payload))
        if not isinstance(payload, Mapping):
            return []
        self._metrics.seen(payload)
        out: list[bytes] = []
        choices = payload.get("choices") or []
        if choices and isinstance(choices[0], Mapping):
            try:
                out += self._choice(choices[0])
            except Untranslatable as exc:
                return out + self._fail(str(exc))
            if choices[0].get("finish_reason"):
                self._done_reason = choices[0]["finish_reason"]
        return out

    def _token(self) -> None:
        if self._metrics.first_token_ns is None:
            self._metrics.first_token_ns = self._clock()

    def _finish(self) -> list[bytes]:
        try:
            out = self._pending()
        except Untranslatable as exc:
            return self._fail(str(exc))
        self._finished = True
        now = self._clock()
        return [
            *out,
            _line({**self._head(now), **self._final(), **_done(self._done_reason, self._metrics, now)}),
        ]

    def _fail(self, message: str) -> list[bytes]:
        self._finished = True
        return [_line(error(message))]

    def _head(self, now: int | None = None) -> Json:
        return {"model": self.model, "created_at": rfc3339_ns(self._clock() if now is None else now)}

    @abstractmethod
    def _choice(self, choice: Mapping[str, Any]) -> list[bytes]:
        """NDJSON lines for one upstream choice delta."""

    def _pending(self) -> list[bytes]:
        """Lines held back until the answer is complete."""
        return []

    @abstractmethod
    def _final(self) -> Json:
        """The empty payload every chunk carries, for the last line."""


class ChatStream(_Stream):
    """`/v1/chat/completions` SSE → `/api/chat` NDJSON."""

    def __init__(self, model: str, started_ns: int, load_ns: int, *, clock: Clock = time.time_ns) -> None:
        super().__init__(model, started_ns, load_ns, clock=clock)
        self._calls: dict[int, dict[str, str]] = {}  # index → id, name, arguments so far

    def _choice(self, choice: Mapping[str, Any]) -> list[bytes]:
        delta = choice.get("delta") or {}
        content = delta.get("content") or ""
        thinking = delta.get("reasoning_content") or ""
        for fragment in delta.get("tool_calls") or []:
            self._token()
            index = _int(fragment.get("index"))
            if index is None:  # no index: a new call starts with an id or a name
                starts = fragment.get("id") or (fragment.get("function") or {}).get("name")
                index = len(self._calls) if starts or not self._calls else max(self._calls)
            call = self._calls.setdefault(index, {"id": "", "name": "", "arguments": ""})
            call["id"] = call["id"] or fragment.get("id") or ""
            function = fragment.get("function") or {}
            call["name"] += function.get("name") or ""
            arguments = function.get("arguments")
            call["arguments"] += arguments if isinstance(arguments, str) else _arguments_text(arguments or {})
        out: list[bytes] = []
        if content or thinking:
            self._token()
            message: Json = {"role": "assistant", "content": content}
            if thinking:
                message["thinking"] = thinking
            out.append(_line({**self._head(), "message": message, "done": False}))
        if choice.get("finish_reason"):
            out += self._pending()
        return out

    def _pending(self) -> list[bytes]:
        """Assembled tool calls, once: Ollama wants whole calls with object arguments."""
        if not self._calls:
            return []
        calls = [_tool_call(i, c["id"], c["name"], c["arguments"]) for i, c in sorted(self._calls.items())]
        self._calls = {}
        message = {"role": "assistant", "content": "", "tool_calls": calls}
        return [_line({**self._head(), "message": message, "done": False})]

    def _final(self) -> Json:
        return {"message": {"role": "assistant", "content": ""}}


class GenerateStream(_Stream):
    """`/v1/completions` SSE → `/api/generate` NDJSON."""

    def _choice(self, choice: Mapping[str, Any]) -> list[bytes]:
        text = choice.get("text") or ""
        thinking = choice.get("reasoning_content") or ""
        if not (text or thinking):
            return []
        self._token()
        chunk: Json = {**self._head(), "response": text}
        if thinking:
            chunk["thinking"] = thinking
        chunk["done"] = False
        return [_line(chunk)]

    def _final(self) -> Json:
        return {"response": ""}


def _first_choice(upstream: Mapping[str, Any]) -> Mapping[str, Any]:
    choices = upstream.get("choices")
    if not choices or not isinstance(choices[0], Mapping):
        if "error" in upstream:
            raise Untranslatable(error_message(upstream))
        raise Untranslatable("upstream answer has no choices")
    return choices[0]


def _answered(upstream: Mapping[str, Any], started_ns: int, load_ns: int) -> _Metrics:
    metrics = _Metrics(started_ns, load_ns)
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
            _tool_call(
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
        **_done(choice.get("finish_reason"), _answered(upstream, started_ns, load_ns), now),
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
    return {**answer, **_done(choice.get("finish_reason"), _answered(upstream, started_ns, load_ns), now)}


def _vectors(upstream: Mapping[str, Any]) -> list[list[float]]:
    data = upstream.get("data")
    if not isinstance(data, list):
        raise Untranslatable(
            error_message(upstream) if "error" in upstream else "upstream answer has no data"
        )
    items = sorted((d for d in data if isinstance(d, Mapping)), key=lambda d: _int(d.get("index")) or 0)
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
        _int(usage.get("prompt_tokens")) if isinstance(usage, Mapping) else None
    ) or 0
    return answer


def embeddings_response(model: str, upstream: Mapping[str, Any]) -> Json:
    """A `/v1/embeddings` answer as a legacy `/api/embeddings` answer: one vector."""
    vectors = _vectors(upstream)
    return {"embedding": vectors[0] if vectors else []}


# --- models: config → Ollama listings --------------------------------------------------------


@dataclass(frozen=True)
class RunningModel:
    runnable: Runnable
    size: int
    expires_at: datetime | None  # None = never (ttl 0)


def ollama_name(model_id: str) -> str:
    """Ollama lists `name:tag`; an id without a tag is listed as `id:latest`."""
    last = model_id.rsplit("/", 1)[-1]
    return model_id if ":" in last else f"{model_id}:latest"


def _digest(model: Runnable) -> str:
    # Stable while the command is; changes when the model or its flags do, as a real digest would.
    return hashlib.sha256("\0".join((model.id, *model.argv)).encode()).hexdigest()


def _text(metadata: Mapping[str, Any], key: str) -> str:
    value = metadata.get(key)
    return value.strip() if isinstance(value, str) else ""


def flag(argv: Sequence[str], *names: str) -> str | None:
    """The value llama-server reads for the option `names` spell (halogen.llamacpp.cmdline)."""
    return cmdline.of_command(argv).get(*(cmdline.canonical(name) for name in names))


def model_file(model: Runnable) -> str | None:
    """The GGUF file the command loads (the last `-m`/`--model`, else `LLAMA_ARG_MODEL`)."""
    return cmdline.of_command(model.argv, model.env).model


def _family(model: Runnable) -> str:
    return _text(model.metadata, "family") or _text(model.metadata, "architecture")


def _architecture(model: Runnable) -> str:
    return _text(model.metadata, "architecture") or _family(model) or "unknown"


def _context_length(model: Runnable) -> int | None:
    value = model.metadata.get("contextLength")
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    if model.capabilities.context:
        return model.capabilities.context
    given = flag(model.argv, "-c", "--ctx-size")
    return int(given) if given and given.isdigit() and int(given) > 0 else None


def _details(model: Runnable) -> Json:
    family = _family(model)
    return {
        "parent_model": "",
        "format": "gguf",
        "family": family,
        "families": [family] if family else None,
        "parameter_size": _text(model.metadata, "parameterSize"),
        "quantization_level": _text(model.metadata, "quantizationLevel"),
    }


def _capabilities(model: Runnable) -> list[str]:
    """Ollama's capabilities: `metadata.capabilities` when given, else `completion`, plus what
    llama-swap's `capabilities` block says that Ollama has a name for: `tools`, and image input
    as `vision`."""
    value = model.metadata.get("capabilities")
    out = [str(c) for c in value] if isinstance(value, list | tuple) and value else ["completion"]
    caps = model.capabilities
    if caps.tools and "tools" not in out:
        out.append("tools")
    if "image" in caps.in_ and "vision" not in out:
        out.append("vision")
    return out


def tags(
    models: Sequence[Runnable],
    sizes: Mapping[str, int],
    *,
    modified: Mapping[str, datetime] | None = None,
) -> Json:
    """`/api/tags`: listed models, sorted by id. `modified` maps ids to file times, if known."""
    modified = modified or {}
    return {
        "models": [
            {
                "name": ollama_name(m.id),
                "model": ollama_name(m.id),
                "modified_at": _rfc3339(modified.get(m.id, UNKNOWN_TIME)),
                "size": int(sizes.get(m.id, 0)),
                "digest": _digest(m),
                "details": _details(m),
            }
            for m in sorted(models, key=lambda m: m.id)
            if not m.unlisted
        ]
    }


# What is known here of a peer's model: its name; its file and facts are the peer's.
_PEER_DETAILS: Json = {
    "parent_model": "",
    "format": "",
    "family": "",
    "families": None,
    "parameter_size": "",
    "quantization_level": "",
}


def peer_tag(name: str) -> Json:
    """An `/api/tags` entry for a peer's model (`<peer>/<model>`)."""
    return {
        "name": ollama_name(name),
        "model": ollama_name(name),
        "modified_at": _rfc3339(UNKNOWN_TIME),
        "size": 0,
        "digest": hashlib.sha256(name.encode()).hexdigest(),
        "details": dict(_PEER_DETAILS),
    }


def peer_show(name: str, peer: str) -> Json:
    """`/api/show` for a peer's model (`name` as asked): enough for a client that shows a model
    before it chats with it (the `ollama` CLI's run does), a chat model with nothing known of
    its file."""
    return {
        "modelfile": f"# Served by peer {peer} through halogen: {name}\n",
        "details": dict(_PEER_DETAILS),
        "model_info": {},
        "capabilities": ["completion"],
        "modified_at": _rfc3339(UNKNOWN_TIME),
    }


def show(model: Runnable, size: int, *, modified_at: datetime | None = None) -> Json:
    """`/api/show`: what clients read to learn a model's context, family and capabilities."""
    arch = _architecture(model)
    context = _context_length(model)
    info: Json = {"general.architecture": arch}
    if model.name:
        info["general.basename"] = model.name
    info[f"{arch}.context_length"] = context or DEFAULT_CONTEXT
    info = locked.model_info(model) or info  # the header's own keys, when the build had a lock
    gguf = model_file(model) or model.id
    answer: Json = {
        "modelfile": f"# Served by halogen through llama-server: {model.id}\nFROM {gguf}\n",
        "details": _details(model),
        "model_info": info,
        "capabilities": _capabilities(model),
        "modified_at": _rfc3339(modified_at or UNKNOWN_TIME),
    }
    loaded = _loaded_context(model)
    if loaded:
        answer["parameters"] = f"num_ctx {loaded}"
    return answer


def _loaded_context(model: Runnable) -> int | None:
    """The context the model is loaded with (Ollama's num_ctx): its -c, else the model's context."""
    given = flag(model.argv, "-c", "--ctx-size")
    return int(given) if given and given.isdigit() and int(given) > 0 else _context_length(model)


def ps(running: Sequence[RunningModel]) -> Json:
    """`/api/ps`: the running models, with when their TTL unloads them."""
    out = []
    for r in sorted(running, key=lambda r: r.runnable.id):
        model = r.runnable
        gpu_layers = flag(model.argv, "-ngl", "--n-gpu-layers", "--gpu-layers")
        entry: Json = {
            "name": ollama_name(model.id),
            "model": ollama_name(model.id),
            "size": locked.memory(model) or r.size,
            "digest": _digest(model),
            "details": _details(model),
            "expires_at": _rfc3339(r.expires_at or NEVER),
            # With every layer on the CPU nothing is in VRAM; otherwise llama-server offloads.
            "size_vram": 0 if gpu_layers == "0" else locked.memory(model) or r.size,
        }
        # Ollama's ps gives the context the model was loaded with (num_ctx), not the trained one.
        context = _loaded_context(model)
        if context:
            entry["context_length"] = context
        out.append(entry)
    return {"models": out}
