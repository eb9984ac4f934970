"""Ollama requests turned into llama-server's OpenAI ones (chat, generate, embed); pure:
dicts in, dicts out. Follows Ollama and its official `ollama` Python client."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

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


def arguments_text(arguments: Any) -> str:
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
                            "arguments": arguments_text(function.get("arguments") or {}),
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
