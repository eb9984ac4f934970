"""Which models a smoke run tests, and how: pure functions of what the endpoint reports.

The kind of a model, from the endpoint's own words:
- `reranker` when its `/v1/models` entry says `capabilities.reranker: true` (llama-swap's
  `capabilities` block, rendered as renderCapabilities in internal/server/api.go does);
- `embedding` when the capabilities Ollama's `/api/show` reports for it (a model file's
  `capabilities`, Ollama's names) include `embedding` but not `completion`; without an
  `/api/show`, the same list in its `/v1/models` entry (`meta.llamaswap.capabilities`);
- `chat` otherwise: a model that says nothing is a chat model, as Ollama takes it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from halogen.smoke.report import Kind

# /v1/models rows that name other models (llama-swap lists selectors, a profile's pins and
# peers' models beside the models: internal/server/api.go): tested only when named.
NOT_MODELS = frozenset({"selector", "profile", "peer"})

# What each kind is checked with, in order: the first request is the one that loads the model.
CHECKS: Mapping[Kind, tuple[str, ...]] = {
    "chat": ("openai-chat", "openai-chat-stream", "ollama-chat", "ollama-chat-stream"),
    "embedding": ("embeddings",),
    "reranker": ("rerank",),
}


def listed(body: Any) -> list[Mapping[str, Any]] | None:
    """The entries of a `/v1/models` answer; None when it is not that shape."""
    if not isinstance(body, Mapping) or not isinstance(body.get("data"), list):
        return None
    rows = body["data"]
    if not all(isinstance(row, Mapping) and isinstance(row.get("id"), str) for row in rows):
        return None
    return list(rows)


def _meta(entry: Mapping[str, Any]) -> Mapping[str, Any]:
    meta = entry.get("meta")
    inner = meta.get("llamaswap") if isinstance(meta, Mapping) else None
    return inner if isinstance(inner, Mapping) else {}


def chosen(entries: Sequence[Mapping[str, Any]], named: Sequence[str]) -> list[str]:
    """The ids to test: those named, in the order given; else every listed model but
    selectors, profile pins and peers' models."""
    if named:
        return list(dict.fromkeys(named))
    return [str(e["id"]) for e in entries if str(_meta(e).get("type")) not in NOT_MODELS]


def kind_of(entry: Mapping[str, Any] | None, shown: Mapping[str, Any] | None) -> Kind:
    """The model's kind (module docstring) from its `/v1/models` entry and its `/api/show`."""
    entry = entry or {}
    caps = entry.get("capabilities")
    if isinstance(caps, Mapping) and caps.get("reranker") is True:
        return "reranker"
    said = shown.get("capabilities") if isinstance(shown, Mapping) else None
    if not isinstance(said, list):
        said = _meta(entry).get("capabilities")
    if isinstance(said, list) and "embedding" in said and "completion" not in said:
        return "embedding"
    return "chat"
