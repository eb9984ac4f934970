"""llama-server's OpenAI event stream turned into Ollama's NDJSON lines as it arrives (chat and
generate); pure: bytes in, lines out (`forward.relay.Ndjson` writes them)."""

from __future__ import annotations

import json
import time
from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any

from halogen.runtime.apis.ollama.answers import (
    Clock,
    Metrics,
    Untranslatable,
    done_fields,
    error,
    error_message,
    int_or_none,
    ndjson_line,
    rfc3339_ns,
    tool_call,
)
from halogen.runtime.apis.ollama.to_openai import arguments_text
from halogen.runtime.process.lines import LineSplitter

Json = dict[str, Any]

MAX_EVENT_BYTES = 4 * 1024 * 1024


class _Stream(ABC):
    """llama-server SSE in, Ollama NDJSON out; reads may split events anywhere."""

    def __init__(self, model: str, started_ns: int, load_ns: int, *, clock: Clock = time.time_ns) -> None:
        self.model = model
        self._clock = clock
        self._metrics = Metrics(started_ns, load_ns)
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
            ndjson_line(
                {**self._head(now), **self._final(), **done_fields(self._done_reason, self._metrics, now)}
            ),
        ]

    def _fail(self, message: str) -> list[bytes]:
        self._finished = True
        return [ndjson_line(error(message))]

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
            index = int_or_none(fragment.get("index"))
            if index is None:  # no index: a new call starts with an id or a name
                starts = fragment.get("id") or (fragment.get("function") or {}).get("name")
                index = len(self._calls) if starts or not self._calls else max(self._calls)
            call = self._calls.setdefault(index, {"id": "", "name": "", "arguments": ""})
            call["id"] = call["id"] or fragment.get("id") or ""
            function = fragment.get("function") or {}
            call["name"] += function.get("name") or ""
            arguments = function.get("arguments")
            call["arguments"] += arguments if isinstance(arguments, str) else arguments_text(arguments or {})
        out: list[bytes] = []
        if content or thinking:
            self._token()
            message: Json = {"role": "assistant", "content": content}
            if thinking:
                message["thinking"] = thinking
            out.append(ndjson_line({**self._head(), "message": message, "done": False}))
        if choice.get("finish_reason"):
            out += self._pending()
        return out

    def _pending(self) -> list[bytes]:
        """Assembled tool calls, once: Ollama wants whole calls with object arguments."""
        if not self._calls:
            return []
        calls = [tool_call(i, c["id"], c["name"], c["arguments"]) for i, c in sorted(self._calls.items())]
        self._calls = {}
        message = {"role": "assistant", "content": "", "tool_calls": calls}
        return [ndjson_line({**self._head(), "message": message, "done": False})]

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
        return [ndjson_line(chunk)]

    def _final(self) -> Json:
        return {"response": ""}
