"""`halogen serve` through the official `ollama` and `openai` clients, with real llama-servers.

One server process for the module: two chat ids on the SmolLM2 GGUF in one swap group (the
second with a tool-call and thinking template), and an embedding model in a group of its own.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import ollama
import openai
import pytest

from .harness import free_port_run, process_exists, until
from .processes import Serving, children, serving_config

pytestmark = [pytest.mark.real, pytest.mark.slow]

TEMPLATE = Path(__file__).with_name("fixtures") / "tools-and-thinking.jinja"
TTL = 300

METADATA = {
    "architecture": "llama",
    "family": "llama",
    "parameterSize": "135M",
    "quantizationLevel": "Q4_1",
}


def config(llama_server: Path, gguf: Path) -> dict[str, object]:
    def command(*flags: str) -> str:
        return " ".join([str(llama_server), "--host 127.0.0.1 --port ${PORT}", f"-m {gguf}", "-t 1", *flags])

    models = {
        "smollm2": {
            "cmd": command("-c 1024"),
            "ttl": TTL,
            "metadata": {**METADATA, "contextLength": 1024, "capabilities": ["completion"]},
        },
        "smollm2-tools": {
            "cmd": command("-c 2048", f"--jinja --chat-template-file {TEMPLATE}"),
            "metadata": {
                **METADATA,
                "contextLength": 2048,
                "capabilities": ["completion", "tools", "thinking"],
            },
        },
        "smollm2-embed": {
            "cmd": command("-c 512", "--embeddings --pooling mean"),
            "metadata": {**METADATA, "capabilities": ["embedding"]},
        },
    }
    return {
        "healthCheckTimeout": 60,
        "startPort": free_port_run(len(models)),
        "models": models,
        "groups": {
            "chat": {"swap": True, "exclusive": False, "members": ["smollm2", "smollm2-tools"]},
            "embed": {"swap": True, "exclusive": False, "members": ["smollm2-embed"]},
        },
    }


class Served(Serving):
    def ollama(self) -> ollama.Client:
        return ollama.Client(host=self.url, timeout=120)

    def openai(self) -> openai.OpenAI:
        return openai.OpenAI(base_url=f"{self.url}/v1", api_key="unused", timeout=120)


@pytest.fixture(scope="module")
def served(
    tmp_path_factory: pytest.TempPathFactory, llama_server: Path, smollm2_gguf: Path
) -> Iterator[Served]:
    with serving_config(tmp_path_factory.mktemp("serve"), config(llama_server, smollm2_gguf)) as serving:
        yield Served(serving.process, serving.url, serving.log)


def test_the_root_and_version_answer_like_ollama(served: Served) -> None:
    root = httpx.get(served.url)
    assert root.status_code == 200 and root.text == "Ollama is running"
    version = httpx.get(f"{served.url}/api/version").json()["version"]
    assert tuple(int(p) for p in version.split(".")) >= (0, 6, 4)


def test_list_shows_every_model_with_a_tag_and_its_gguf_size(served: Served, smollm2_gguf: Path) -> None:
    models = {m.model: m for m in served.ollama().list().models}
    assert set(models) == {"smollm2:latest", "smollm2-tools:latest", "smollm2-embed:latest"}
    entry = models["smollm2:latest"]
    assert entry.size == smollm2_gguf.stat().st_size
    assert entry.details is not None
    assert (entry.details.format, entry.details.family, entry.details.parameter_size) == (
        "gguf",
        "llama",
        "135M",
    )
    assert entry.digest and len(entry.digest) == 64


def test_show_gives_the_context_length_and_capabilities(served: Served) -> None:
    shown = served.ollama().show("smollm2-tools")
    assert shown.modelinfo is not None
    assert shown.modelinfo["general.architecture"] == "llama"
    assert shown.modelinfo["llama.context_length"] == 2048
    assert shown.capabilities == ["completion", "tools", "thinking"]
    with pytest.raises(ollama.ResponseError) as missing:
        served.ollama().show("no-such-model")
    assert missing.value.status_code == 404


def test_chat_without_streaming_answers_with_counts(served: Served) -> None:
    response = served.ollama().chat(
        "smollm2:latest",
        messages=[{"role": "user", "content": "Say hi in three words."}],
        options={"num_predict": 8, "temperature": 0, "seed": 1},
        stream=False,
    )
    assert response.message.role == "assistant"
    assert response.message.content
    assert response.done is True and response.done_reason in ("stop", "length")
    assert response.eval_count is not None and 0 < response.eval_count <= 8
    assert response.prompt_eval_count and response.prompt_eval_count > 5
    assert (
        response.total_duration
        and response.eval_duration
        and response.total_duration > response.eval_duration
    )


def test_chat_streams_chunks_and_one_final_line(served: Served) -> None:
    parts = list(
        served.ollama().chat(
            "smollm2",
            messages=[{"role": "user", "content": "Count from one to five."}],
            options={"num_predict": 12, "temperature": 0},
            stream=True,
        )
    )
    assert len(parts) > 2
    assert [p.done for p in parts] == [False] * (len(parts) - 1) + [True]
    assert "".join(p.message.content or "" for p in parts)
    last = parts[-1]
    assert last.done_reason in ("stop", "length")
    assert last.eval_count is not None and 0 < last.eval_count <= 12
    assert last.prompt_eval_count and last.total_duration


def test_ps_lists_the_running_model_until_its_ttl(served: Served) -> None:
    client = served.ollama()
    client.chat("smollm2", messages=[{"role": "user", "content": "Hi"}], options={"num_predict": 2})
    running = {m.model: m for m in client.ps().models}
    assert "smollm2:latest" in running
    entry = running["smollm2:latest"]
    assert entry.expires_at is not None
    now = datetime.now(UTC)
    assert now < entry.expires_at <= now + timedelta(seconds=TTL + 5)
    assert entry.size and entry.size > 0


def test_keep_alive_0_unloads_the_model_once_it_has_answered(served: Served) -> None:
    client = served.ollama()
    answer = client.generate("smollm2", "Hi", options={"num_predict": 2}, keep_alive=0)
    assert answer.done
    until(
        lambda: "smollm2:latest" not in {m.model for m in client.ps().models},
        "keep_alive=0 unloaded smollm2",
        patience=30,
        interval=0.05,
    )
    answer = client.generate("smollm2", "Hi", options={"num_predict": 2}, keep_alive="-1")
    (entry,) = [m for m in client.ps().models if m.model == "smollm2:latest"]
    assert entry.expires_at is not None and entry.expires_at.year == 9999  # never


def test_generate_streams_and_answers_whole(served: Served) -> None:
    client = served.ollama()
    whole = client.generate(
        "smollm2", "The capital of France is", options={"num_predict": 6, "temperature": 0}
    )
    assert whole.response and whole.done and whole.eval_count
    parts = list(
        client.generate(
            "smollm2", "The capital of France is", options={"num_predict": 6, "temperature": 0}, stream=True
        )
    )
    assert parts[-1].done and not any(p.done for p in parts[:-1])
    assert "".join(p.response or "" for p in parts)


def test_models_in_one_swap_group_replace_each_other(served: Served) -> None:
    client = served.ollama()
    client.chat("smollm2", messages=[{"role": "user", "content": "Hi"}], options={"num_predict": 2})
    client.chat(
        "smollm2-tools:latest",
        messages=[{"role": "user", "content": "Hi"}],
        options={"num_predict": 2},
        think=False,
    )
    running = {m.model for m in client.ps().models}
    assert "smollm2-tools:latest" in running
    assert "smollm2:latest" not in running


def test_a_tool_call_comes_back_with_object_arguments(served: Served) -> None:
    weather = {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Get the weather for a city",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
            },
        },
    }

    # The 135M model needs a nudge: two earlier calls in the history (which also exercises the
    # history's translation), and an answer that starts with the call for the model to finish.
    def earlier(city: str, weather: str) -> list[dict[str, Any]]:
        call = {"function": {"name": "get_weather", "arguments": {"city": city}}}
        return [
            {"role": "user", "content": f"What is the weather in {city}?"},
            {"role": "assistant", "content": "", "tool_calls": [call]},
            {"role": "tool", "content": weather, "tool_name": "get_weather"},
            {"role": "assistant", "content": f"In {city}: {weather}."},
        ]

    prefill = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Ro'
    messages = [
        *earlier("London", "rain, 12 C"),
        *earlier("Paris", "sun, 25 C"),
        {"role": "user", "content": "What is the weather in Rome?"},
        {"role": "assistant", "content": prefill},
    ]
    client = served.ollama()
    options = {"num_predict": 20, "temperature": 0}
    whole = client.chat("smollm2-tools", messages=messages, tools=[weather], think=False, options=options)
    streamed = list(
        client.chat(
            "smollm2-tools", messages=messages, tools=[weather], think=False, options=options, stream=True
        )
    )
    for parts in ([whole], streamed):
        calls = [c for p in parts for c in p.message.tool_calls or []]
        assert len(calls) == 1, parts
        assert calls[0].function.name == "get_weather"
        assert dict(calls[0].function.arguments)["city"].startswith("Ro")
        assert parts[-1].done_reason == "tool_calls"


def test_thinking_comes_back_as_message_thinking(served: Served) -> None:
    turn = [
        {"role": "user", "content": "Say hello."},
        {"role": "assistant", "thinking": "The user wants a greeting.", "content": "Hello!"},
    ]
    response = served.ollama().chat(
        "smollm2-tools",
        messages=[*turn, *turn, {"role": "user", "content": "Say hello."}],
        think=True,
        options={"num_predict": 30, "temperature": 0},
    )
    assert response.message.thinking
    assert "</think>" not in (response.message.content or "")


def test_embed_returns_normalized_vectors_and_embeddings_the_raw_one(served: Served) -> None:
    client = served.ollama()
    embedded = client.embed("smollm2-embed", ["Why is the sky blue?", "Grass is green."])
    assert len(embedded.embeddings) == 2
    assert all(len(v) == 576 for v in embedded.embeddings)
    assert all(math.isclose(math.hypot(*v), 1.0, rel_tol=1e-3) for v in embedded.embeddings)
    assert embedded.prompt_eval_count and embedded.prompt_eval_count > 0
    legacy = client.embeddings("smollm2-embed:latest", "Why is the sky blue?").embedding
    assert len(legacy) == 576
    assert not math.isclose(math.hypot(*legacy), 1.0, rel_tol=1e-3)
    # The same text: the raw vector points the same way as the normalized one.
    norm = math.hypot(*legacy)
    assert all(
        math.isclose(a / norm, b, abs_tol=1e-4) for a, b in zip(legacy, embedded.embeddings[0], strict=True)
    )


def test_openai_client_lists_chats_and_embeds(served: Served) -> None:
    client = served.openai()
    ids = [m.id for m in client.models.list()]
    assert ids == sorted(["smollm2", "smollm2-tools", "smollm2-embed"])
    chat = client.chat.completions.create(
        model="smollm2", messages=[{"role": "user", "content": "Say hi."}], max_tokens=6, temperature=0
    )
    assert chat.choices[0].message.content
    assert chat.usage is not None and 0 < chat.usage.completion_tokens <= 6
    chunks = list(
        client.chat.completions.create(
            model="smollm2",
            messages=[{"role": "user", "content": "Say hi."}],
            max_tokens=6,
            temperature=0,
            stream=True,
        )
    )
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert any(c.choices and c.choices[0].finish_reason for c in chunks)
    vectors = client.embeddings.create(model="smollm2-embed", input=["a", "b"]).data
    assert [len(v.embedding) for v in vectors] == [576, 576]


def test_stopping_the_server_leaves_no_llama_server_behind(served: Served) -> None:
    # Runs last in the module: by now every model has been started at least once.
    servers = children(served.process.pid, "llama-server")
    assert servers, "some llama-server is running under halogen serve"
    assert served.stop() == 0, served.output()
    until(
        lambda: not any(process_exists(pid) for pid in servers),
        "no llama-server outlived halogen serve",
        patience=10,
        interval=0.05,
    )
