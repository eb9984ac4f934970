"""The pure pieces of `halogen smoke`: the kind rule, the choice of models, the figures from
llama-server's timings, the server's error message, and escaping what a server chose."""

from __future__ import annotations

from typing import Any

import pytest

from halogen.smoke.checks import speeds
from halogen.smoke.client import server_message
from halogen.smoke.kinds import chosen, kind_of
from halogen.smoke.report import printable


@pytest.mark.parametrize(
    ("entry", "shown", "kind"),
    [
        ({"id": "m"}, None, "chat"),
        ({"id": "m"}, {"capabilities": ["completion", "tools"]}, "chat"),
        ({"id": "m"}, {"capabilities": ["embedding"]}, "embedding"),
        # Both: a chat model that also embeds is checked as a chat model.
        ({"id": "m"}, {"capabilities": ["completion", "embedding"]}, "chat"),
        ({"id": "m", "capabilities": {"reranker": True}}, {"capabilities": ["completion"]}, "reranker"),
        ({"id": "m", "capabilities": {"reranker": "yes"}}, None, "chat"),
        # Without /api/show, the model file's capabilities as /v1/models carries them.
        ({"id": "m", "meta": {"llamaswap": {"capabilities": ["embedding"]}}}, None, "embedding"),
        # /api/show is the Ollama API's own word and wins.
        (
            {"id": "m", "meta": {"llamaswap": {"capabilities": ["embedding"]}}},
            {"capabilities": ["completion"]},
            "chat",
        ),
        (None, {"capabilities": "embedding"}, "chat"),
    ],
)
def test_the_kind_follows_what_the_endpoint_reports(entry: Any, shown: Any, kind: str) -> None:
    assert kind_of(entry, shown) == kind


def test_the_models_named_are_tested_in_their_order_once_else_every_model_listed() -> None:
    rows = [
        {"id": "b"},
        {"id": "a", "meta": {"llamaswap": {}}},
        {"id": "pick", "meta": {"llamaswap": {"type": "selector"}}},
        {"id": "pin", "meta": {"llamaswap": {"type": "profile"}}},
        {"id": "box/c", "meta": {"llamaswap": {"type": "peer"}}},
    ]
    assert chosen(rows, []) == ["b", "a"]
    assert chosen(rows, ["pick", "a", "pick"]) == ["pick", "a"]


def test_speeds_are_llama_servers_per_second_figures_else_counts_over_milliseconds() -> None:
    assert speeds(
        {"prompt_per_second": 512.5, "predicted_per_second": 40.0, "prompt_n": 1, "prompt_ms": 1}
    ) == (
        512.5,
        40.0,
    )
    assert speeds({"prompt_n": 100, "prompt_ms": 50.0, "predicted_n": 0, "predicted_ms": 0}) == (2000.0, None)
    assert speeds(None) == (None, None)
    assert speeds({"prompt_per_second": "fast"}) == (None, None)


@pytest.mark.parametrize(
    ("body", "said"),
    [
        ('{"error": {"message": "model not found", "type": "not_found_error"}}', "model not found"),
        (
            '{"error": "model \\"x\\" not found, try pulling it first"}',
            'model "x" not found, try pulling it first',
        ),
        ('{"type": "error", "error": {"type": "overloaded_error", "message": "busy"}}', "busy"),
        ('{"src": "llama-swap", "error": "unknown profile"}', "unknown profile"),
        ("Bad Gateway\n", "Bad Gateway"),
        ("", "(empty body)"),
        ("x" * 1000, "x" * 299 + "…"),
    ],
)
def test_the_servers_message_is_taken_from_each_apis_error_shape(body: str, said: str) -> None:
    assert server_message(body) == said


def test_printable_escapes_controls_format_characters_and_line_separators() -> None:
    assert printable("a\x1b[31mb\n\u202ec\u2028d\x7f") == "a\\x1b[31mb\\x0a\\u202ec\\u2028d\\x7f"
    assert printable("Qwen2.5-Coder 7B é 模型") == "Qwen2.5-Coder 7B é 模型"
