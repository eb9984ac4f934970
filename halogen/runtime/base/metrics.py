"""Per-model counters, rendered as Prometheus text, and the token counts read from responses."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields
from typing import Any

# A non-streamed answer bigger than this is forwarded without being parsed for token counts.
MAX_PARSED_BODY = 4 * 1024 * 1024


@dataclass
class ModelStats:
    requests: int = 0
    errors: int = 0
    swaps: int = 0
    load_seconds: float = 0.0
    prompt_tokens: int = 0
    generated_tokens: int = 0


# name, help, type, field
_SERIES = (
    ("halogen_requests_total", "Requests routed to the model.", "counter", "requests"),
    ("halogen_request_errors_total", "Requests answered with an error status.", "counter", "errors"),
    ("halogen_swaps_total", "Times the model was started.", "counter", "swaps"),
    ("halogen_load_seconds_total", "Seconds spent starting the model.", "counter", "load_seconds"),
    ("halogen_prompt_tokens_total", "Prompt tokens the upstream reported.", "counter", "prompt_tokens"),
    (
        "halogen_generated_tokens_total",
        "Generated tokens the upstream reported.",
        "counter",
        "generated_tokens",
    ),
)
assert {f for *_, f in _SERIES} == {f.name for f in fields(ModelStats)}


class Metrics:
    def __init__(self, model_ids: Iterable[str] = ()) -> None:
        self._stats: dict[str, ModelStats] = {mid: ModelStats() for mid in model_ids}

    def of(self, model_id: str) -> ModelStats:
        return self._stats.setdefault(model_id, ModelStats())

    def request(self, model_id: str, status: int) -> None:
        stats = self.of(model_id)
        stats.requests += 1
        if status >= 400:
            stats.errors += 1

    def swap(self, model_id: str, seconds: float) -> None:
        stats = self.of(model_id)
        stats.swaps += 1
        stats.load_seconds += seconds

    def tokens(self, model_id: str, counts: tuple[int, int] | None) -> None:
        if counts is None:
            return
        stats = self.of(model_id)
        stats.prompt_tokens += counts[0]
        stats.generated_tokens += counts[1]

    def render(
        self,
        running: Mapping[str, bool],
        in_flight: Mapping[str, int] | None = None,
        queued: Mapping[str, int] | None = None,
    ) -> str:
        """Prometheus text exposition format 0.0.4, models in sorted order."""
        in_flight = in_flight or {}
        queued = queued or {}
        out: list[str] = []
        ids = sorted(set(self._stats) | set(running) | set(in_flight))
        for name, help_text, kind, attr in _SERIES:
            out += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]
            for mid in ids:
                value = getattr(self.of(mid), attr)
                out.append(f"{name}{{model={_label(mid)}}} {_number(value)}")
        out += [
            "# HELP halogen_model_running 1 while the model's process runs.",
            "# TYPE halogen_model_running gauge",
        ]
        out += [f"halogen_model_running{{model={_label(mid)}}} {int(running.get(mid, False))}" for mid in ids]
        out += [
            "# HELP halogen_requests_in_flight Requests being served by the model or waiting for it.",
            "# TYPE halogen_requests_in_flight gauge",
        ]
        out += [f"halogen_requests_in_flight{{model={_label(mid)}}} {in_flight.get(mid, 0)}" for mid in ids]
        out += [
            "# HELP halogen_requests_queued Requests waiting in the queue for the model (not holding it yet).",
            "# TYPE halogen_requests_queued gauge",
        ]
        out += [f"halogen_requests_queued{{model={_label(mid)}}} {queued.get(mid, 0)}" for mid in ids]
        return "\n".join(out) + "\n"


def _label(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"') + '"'


def _number(value: float) -> str:
    return repr(float(value)) if isinstance(value, float) else str(value)


# Where one answer or stream event carries its usage, in each API's shape: OpenAI's chat and
# completions (`usage`), the Responses API's `response.completed` event (`response.usage`) and
# Anthropic's `message_start` event (`message.usage`); as internal/server/metrics.go (llama-swap).
_USAGE_PATHS = (("usage",), ("response", "usage"), ("message", "usage"))
Partial = tuple[int | None, int | None]


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _usage(usage: Mapping[str, Any]) -> Partial:
    """(input, output) tokens of one usage object, in OpenAI's names or Anthropic's and the
    Responses API's (`input_tokens`, `output_tokens`); None where it has no count."""
    prompt = _int(usage.get("prompt_tokens"))
    if prompt is None:
        prompt = _int(usage.get("input_tokens"))
    generated = _int(usage.get("completion_tokens"))
    if generated is None:
        generated = _int(usage.get("output_tokens"))
    return prompt, generated


def partial_counts(event: Any) -> Partial | None:
    """The token counts one answer or stream event carries, each None when it does not say:
    `usage` (at any of `_USAGE_PATHS`) when the upstream sends it, else llama-server's `timings`.
    Anthropic's stream says the input in `message_start` and the output in `message_delta`."""
    if not isinstance(event, dict):
        return None
    for path in _USAGE_PATHS:
        found: Any = event
        for key in path:
            found = found.get(key) if isinstance(found, dict) else None
        if isinstance(found, dict):
            counts = _usage(found)
            if counts != (None, None):
                return counts
    timings = event.get("timings")
    if isinstance(timings, dict):
        prompt, generated = _int(timings.get("prompt_n")), _int(timings.get("predicted_n"))
        cached = _int(timings.get("cache_n")) or 0
        if prompt is not None and generated is not None:
            return prompt + cached, generated
    return None


def token_counts(event: Any) -> tuple[int, int] | None:
    """(prompt, generated) tokens from one answer or stream event (see `partial_counts`)."""
    counts = partial_counts(event)
    if counts is None:
        return None
    return counts[0] or 0, counts[1] or 0


class TokenReader:
    """Watches a response as it is forwarded and keeps the token counts it carried: of each
    count, the last non-zero one (Anthropic's stream gives input and output in different events;
    processStreamingResponse in internal/server/metrics.go, llama-swap, merges them so).

    SSE is read line by line (an event can be split across reads); any other body is kept up
    to `MAX_PARSED_BODY` and parsed once complete.
    """

    def __init__(self, event_stream: bool) -> None:
        self._event_stream = event_stream
        self._partial = b""  # the SSE line still open at the end of the last chunk
        self._body = bytearray()
        self._overflow = False
        self._prompt: int | None = None
        self._generated: int | None = None
        # For the activity log: llama-server's last `timings` and an error body's message.
        self.timings: dict[str, Any] | None = None
        self.error = ""

    @property
    def counts(self) -> tuple[int, int] | None:
        if self._prompt is None and self._generated is None:
            return None
        return self._prompt or 0, self._generated or 0

    def feed(self, chunk: bytes) -> None:
        if self._event_stream:
            # On the hot path: most chunks carry tokens, not counts, so look for the markers
            # with one scan in C and split into lines only when one is there.
            cut = chunk.rfind(b"\n")
            if cut < 0:
                self._partial = (self._partial + chunk)[-MAX_PARSED_BODY:]
                return
            complete = self._partial + chunk[:cut]
            self._partial = chunk[cut + 1 :]
            if b'"usage"' in complete or b'"timings"' in complete or b'"error"' in complete:
                for line in complete.split(b"\n"):
                    self._line(line.rstrip(b"\r"))
        elif not self._overflow:
            self._body += chunk
            if len(self._body) > MAX_PARSED_BODY:
                self._overflow = True
                self._body = bytearray()

    def close(self) -> tuple[int, int] | None:
        if self._event_stream:
            self._line(self._partial.rstrip(b"\r"))
            self._partial = b""
        elif self._body and not self._overflow:
            self._found(bytes(self._body))
        return self.counts

    def _line(self, line: bytes) -> None:
        # Only the events that can carry counts are parsed: the final one, usually.
        if line.startswith(b"data:") and (b'"usage"' in line or b'"timings"' in line or b'"error"' in line):
            self._found(line[5:])

    def _found(self, data: bytes) -> None:
        try:
            event = json.loads(data)
        except ValueError:
            return
        if isinstance(event, dict):
            if isinstance(event.get("timings"), dict):
                self.timings = event["timings"]
            self.error = error_message(event) or self.error
        counts = partial_counts(event)
        if counts is None:
            return
        prompt, generated = counts
        if prompt is not None and (prompt > 0 or self._prompt is None):
            self._prompt = prompt
        if generated is not None and (generated > 0 or self._generated is None):
            self._generated = generated


def error_message(event: Mapping[str, Any]) -> str:
    """The message an error body carries (extractErrorMessage in internal/server/metrics.go,
    llama-swap: `error.message`, `error`, `message`, `detail`), at most 500 characters."""
    error = event.get("error")
    for found in (
        (error or {}).get("message") if isinstance(error, dict) else None,
        error,
        event.get("message"),
        event.get("detail"),
    ):
        if isinstance(found, str) and found.strip():
            text = found.strip()
            return text[:500] + "..." if len(text) > 500 else text
    return ""
