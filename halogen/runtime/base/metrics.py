"""Per-model counters and histograms for /metrics (prometheus_client), and what an answer tells
of them: its token counts and llama-server's generation speed."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

from prometheus_client import Counter, Histogram
from prometheus_client.metrics_core import Metric

# A non-streamed answer bigger than this is forwarded without being parsed for token counts.
MAX_PARSED_BODY = 4 * 1024 * 1024

# Histogram bounds, chosen for local models on one box rather than prometheus_client's defaults
# (5 ms to 10 s, made for web requests):
# - time to first token: a warm model answers in tens of milliseconds to a few seconds (a long
#   prompt on a CPU); a cold one first loads, from seconds (SmolLM2) to minutes (a 70B GGUF read
#   from disk into unified memory), so the bounds run to 10 minutes, `healthCheckTimeout`'s reach.
FIRST_TOKEN_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0)
# - generation speed: a dense 70B on a CPU or an APU makes 1-5 tokens/s, a 7-30B model 10-80,
#   a small or MoE model on a GPU 100-300; 500 covers SmolLM2-sized models.
TOKENS_PER_SECOND_BUCKETS = (
    1.0,
    2.0,
    5.0,
    10.0,
    15.0,
    20.0,
    30.0,
    40.0,
    50.0,
    75.0,
    100.0,
    150.0,
    200.0,
    300.0,
    500.0,
)
# - queue wait: most requests do not wait (0, the first bucket); the others wait for a running
#   model's requests to drain, or for other models to stop and this one to load: minutes.
QUEUE_WAIT_BUCKETS = (0.005, 0.05, 0.1, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0)
# - load time: from a second (a small model in the page cache) to minutes (a large model cold).
LOAD_BUCKETS = (0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 180.0, 300.0, 600.0)


class _Model:
    """One model's children of each metric, looked up once (`labels()` takes a lock and checks
    its arguments: a request pays it once per model, not once per count)."""

    def __init__(self, metrics: Metrics, model_id: str) -> None:
        self.requests = metrics.requests.labels(model_id)
        self.errors = metrics.errors.labels(model_id)
        self.swaps = metrics.swaps.labels(model_id)
        self.load_seconds = metrics.load_seconds.labels(model_id)
        self.prompt_tokens = metrics.prompt_tokens.labels(model_id)
        self.generated_tokens = metrics.generated_tokens.labels(model_id)
        self._model_id = model_id
        self._histograms: dict[Histogram, Histogram] = {}

    def histogram(self, family: Histogram) -> Histogram:
        # A histogram's series appear with the model's first observation, not before: a model
        # never asked for would add a dozen empty buckets per histogram to every scrape.
        child = self._histograms.get(family)
        if child is None:
            child = self._histograms[family] = family.labels(self._model_id)
        return child


class Metrics:
    """halogen's own counters and histograms per model (label `model`), as prometheus_client
    metrics that belong to no registry: a `Metrics` is a collector, registered in its app's own
    `CollectorRegistry` (tests run many apps in one process; the global registry would mix them).

    `_created` series are left out here, for these metrics only (`collect`), rather than with
    `prometheus_client.disable_created_metrics()`, which would switch them off for every user
    of the library in the process. The text format has no use for them: Prometheus reads a
    counter's reset from its value.
    """

    def __init__(self, model_ids: Iterable[str] = ()) -> None:
        def counter(name: str, help_text: str) -> Counter:
            return Counter(name, help_text, ["model"], registry=None)

        def histogram(name: str, help_text: str, buckets: Sequence[float]) -> Histogram:
            return Histogram(name, help_text, ["model"], registry=None, buckets=buckets)

        # prometheus_client adds `_total` to a counter's name: these are the names /metrics
        # has always had.
        self.requests = counter("halogen_requests", "Requests routed to the model.")
        self.errors = counter("halogen_request_errors", "Requests answered with an error status.")
        self.swaps = counter("halogen_swaps", "Times the model was started.")
        self.load_seconds = counter("halogen_load_seconds", "Seconds spent starting the model.")
        self.prompt_tokens = counter("halogen_prompt_tokens", "Prompt tokens the upstream reported.")
        self.generated_tokens = counter("halogen_generated_tokens", "Generated tokens the upstream reported.")
        self.first_token_seconds = histogram(
            "halogen_time_to_first_token_seconds",
            "Seconds from a streamed request reaching the proxy to the first event of its answer "
            "(queue wait and model load included).",
            FIRST_TOKEN_BUCKETS,
        )
        self.tokens_per_second = histogram(
            "halogen_generation_tokens_per_second",
            "Generation speed of an answer, as llama-server timed it (timings.predicted_per_second).",
            TOKENS_PER_SECOND_BUCKETS,
        )
        self.queue_wait_seconds = histogram(
            "halogen_queue_wait_seconds",
            "Seconds a request waited in the queue before the model was granted to it.",
            QUEUE_WAIT_BUCKETS,
        )
        self.model_load_seconds = histogram(
            "halogen_model_load_seconds", "Seconds one start of the model took.", LOAD_BUCKETS
        )
        self._counters = (
            self.requests,
            self.errors,
            self.swaps,
            self.load_seconds,
            self.prompt_tokens,
            self.generated_tokens,
        )
        self._histograms = (
            self.first_token_seconds,
            self.tokens_per_second,
            self.queue_wait_seconds,
            self.model_load_seconds,
        )
        self._models: dict[str, _Model] = {}
        self.include(model_ids)

    def of(self, model_id: str) -> _Model:
        model = self._models.get(model_id)
        if model is None:
            model = self._models[model_id] = _Model(self, model_id)
        return model

    def include(self, model_ids: Iterable[str]) -> None:
        """Give each model its counters (at 0 until counted), so every model has a series."""
        for model_id in model_ids:
            self.of(model_id)

    def known(self) -> set[str]:
        return set(self._models)

    def request(self, model_id: str, status: int) -> None:
        model = self.of(model_id)
        model.requests.inc()
        if status >= 400:
            model.errors.inc()

    def swap(self, model_id: str, seconds: float) -> None:
        model = self.of(model_id)
        model.swaps.inc()
        model.load_seconds.inc(seconds)
        model.histogram(self.model_load_seconds).observe(seconds)

    def tokens(self, model_id: str, counts: tuple[int, int] | None) -> None:
        if counts is None:
            return
        model = self.of(model_id)
        model.prompt_tokens.inc(counts[0])
        model.generated_tokens.inc(counts[1])

    def first_token(self, model_id: str, seconds: float) -> None:
        self.of(model_id).histogram(self.first_token_seconds).observe(seconds)

    def generation_rate(self, model_id: str, per_second: float | None) -> None:
        if per_second is not None:
            self.of(model_id).histogram(self.tokens_per_second).observe(per_second)

    def queue_wait(self, model_id: str, seconds: float) -> None:
        self.of(model_id).histogram(self.queue_wait_seconds).observe(seconds)

    def collect(self) -> Iterator[Metric]:
        """The families, in a fixed order, without their `_created` samples."""
        for family in (*self._counters, *self._histograms):
            for metric in family.collect():
                metric.samples = [s for s in metric.samples if not s.name.endswith("_created")]
                yield metric


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


def generation_rate(event: Any) -> float | None:
    """The generation speed (tokens/s) llama-server timed for one answer: `predicted_per_second`
    of its `timings` (on the last event of a stream). None when it says none, or 0: llama-server
    gives 0 for an answer of one token, whose rate it cannot time (n_gen_tps in
    tools/server/server-common.h)."""
    timings = event.get("timings") if isinstance(event, dict) else None
    rate = timings.get("predicted_per_second") if isinstance(timings, dict) else None
    if isinstance(rate, (int, float)) and not isinstance(rate, bool) and 0 < rate < float("inf"):
        return float(rate)
    return None


def token_counts(event: Any) -> tuple[int, int] | None:
    """(prompt, generated) tokens from one answer or stream event (see `partial_counts`)."""
    counts = partial_counts(event)
    if counts is None:
        return None
    return counts[0] or 0, counts[1] or 0


class TokenReader:
    """Watches a response as it is forwarded and keeps the token counts it carried, and the
    generation speed llama-server timed (`generation_rate`): of each count, the last non-zero one (Anthropic's stream gives input and output in different events;
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
