"""The running llama-servers' own `/metrics`, merged into halogen's under a `model` label (what
llama-swap's issue #262 asks for): each ready model whose command enables the endpoint
(`--metrics` or LLAMA_ARG_ENDPOINT_METRICS, common/arg.cpp) is asked at scrape time, all at once,
each within `TIMEOUT`; what it answers is parsed with prometheus_client's parser and written out
again by the library, so text an upstream gets wrong cannot break halogen's.

llama-server writes its families as `llamacpp:<name>` (server_task_result_metrics::to_metrics in
tools/server/server-task.cpp). Its `llamacpp:n_tokens_max` is typed a counter without `_total`;
prometheus_client's parser names such a counter's sample `..._total`, so it comes out as
`llamacpp:n_tokens_max_total`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import aiohttp
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from halogen.llamacpp import cmdline
from halogen.llamaswap.resolved import Runnable
from halogen.runtime.forward.proxy import upstream_key
from halogen.runtime.process.upstream import Upstream

# Seconds one upstream has to answer: a hung or busy server leaves out its series for this
# scrape rather than stall the scrape past Prometheus's own scrape_timeout (10 s by default).
TIMEOUT = 2.0
# llama-server's answer is some 3 KB; one much larger is not read on. The parser is pure Python:
# 256 KiB of text takes it some 0.1 s, which it spends in a thread (`scrape`), not on the loop.
MAX_BYTES = 256 * 1024
MAX_SAMPLES = 10_000  # per model
# Halogen's own names: an upstream cannot write into them.
OWN_PREFIX = "halogen_"
LABEL = "model"
# Where an upstream's own `model` label goes (Prometheus's `exported_` rule for honor_labels).
EXPORTED = "exported_" + LABEL
# The sample names each family type may hold (OpenMetrics); `_created` is left out everywhere.
_SUFFIXES = {
    "counter": ("_total",),
    "gauge": ("",),
    "unknown": ("",),
    "untyped": ("",),
    "histogram": ("_bucket", "_count", "_sum"),
    "gaugehistogram": ("_bucket", "_gcount", "_gsum"),
    "summary": ("", "_count", "_sum"),
    "info": ("_info",),
    "stateset": ("",),
}


def scraped(runnable: Runnable) -> bool:
    """Whether the model's llama-server serves /metrics (`--metrics`, or its variable)."""
    return cmdline.of_command(runnable.argv, runnable.env).get("--metrics") == "1"


async def fetch(upstream: Upstream, timeout: float) -> str | None:
    """The text of the upstream's /metrics; None when it does not answer 200 within `timeout`
    or answers more than MAX_BYTES."""
    key = upstream_key(upstream.runnable)
    headers = {"Authorization": f"Bearer {key}"} if key is not None else {}
    try:
        async with asyncio.timeout(timeout):
            # A new connection each time: scrapes come every 15-60 s, long after llama-server has
            # closed an idle kept-alive one (5 s), which a pooled request would find closed.
            session = upstream.pool.fresh_session
            async with session.get(upstream.url("/metrics"), headers=headers) as response:
                if response.status != 200:
                    return None
                body = bytearray()
                async for chunk in response.content.iter_chunked(64 * 1024):
                    body += chunk
                    if len(body) > MAX_BYTES:
                        response.close()
                        return None
    except (aiohttp.ClientError, OSError, TimeoutError, ValueError):
        return None
    return body.decode("utf-8", "replace")


async def scrape(upstreams: Sequence[Upstream], timeout: float | None = None) -> list[Metric]:
    """Every upstream's families, fetched concurrently (each within `timeout`, else `TIMEOUT`),
    merged (`merge`)."""
    timeout = TIMEOUT if timeout is None else timeout
    texts = await asyncio.gather(*(fetch(upstream, timeout) for upstream in upstreams))
    found = {u.id: text for u, text in zip(upstreams, texts, strict=True) if text is not None}
    # Off the event loop: requests go on being served while the texts are parsed.
    return await asyncio.to_thread(merge, found) if found else []


def parse(text: str) -> list[Metric]:
    """The families of one upstream's text; none when any of it does not parse (a server that
    writes garbage tells nothing reliable)."""
    try:
        return list(text_string_to_metric_families(text))
    except Exception:  # the parser raises what it meets: ValueError, IndexError, KeyError...
        return []


@dataclass
class _Merging:
    family: Metric
    seen: set[tuple[str, tuple[tuple[str, str], ...]]]


def merge(texts: Mapping[str, str]) -> list[Metric]:
    """The families of each model's text, each sample given `model="<id>"` (the upstream's own
    `model` label kept as `exported_model`), in model order; one family per name across models.

    Left out: families in halogen's own names, of an unknown type, or typed otherwise than the
    first model that wrote the name; samples a family may not hold, or that another family
    holds; a sample seen before; beyond MAX_SAMPLES per model. Timestamps are dropped: the
    values are read now."""
    merged: dict[str, _Merging] = {}
    owner: dict[str, str] = {}  # sample name -> the family that writes it
    for model_id in sorted(texts):
        count = 0
        for family in parse(texts[model_id]):
            suffixes = _SUFFIXES.get(family.type)
            if suffixes is None or family.name.startswith(OWN_PREFIX):
                continue
            entry = merged.get(family.name)
            if entry is None:
                entry = merged[family.name] = _Merging(
                    Metric(family.name, family.documentation, family.type, family.unit), set()
                )
            elif entry.family.type != family.type:
                continue
            allowed = {family.name + suffix for suffix in suffixes}
            for sample in family.samples:
                if count >= MAX_SAMPLES:
                    break
                if sample.name not in allowed or owner.setdefault(sample.name, family.name) != family.name:
                    continue
                labels = _labelled(sample.labels, model_id)
                key = (sample.name, tuple(sorted(labels.items())))
                if key in entry.seen:
                    continue
                entry.seen.add(key)
                entry.family.samples.append(Sample(sample.name, labels, sample.value))
                count += 1
    return [entry.family for entry in merged.values() if entry.family.samples]


def _labelled(labels: Mapping[str, str], model_id: str) -> dict[str, str]:
    out = {name: value for name, value in labels.items() if name != LABEL and not name.startswith("__")}
    if LABEL in labels:
        out[EXPORTED] = labels[LABEL]
    out[LABEL] = model_id
    return out
