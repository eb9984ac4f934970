"""The Ollama layer as the official `ollama` client sees it.

Upstream text is recorded from the real llama-server (tests/runtime/fixtures/, see README there);
every answer is checked with the client's own pydantic types, and the end-to-end cases run the
real `ollama.Client` over an in-memory transport so its request bodies and its parsing are the
ones a user gets.
"""

from __future__ import annotations

import base64
import json
import math
import re
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from halogen.llamaswap.resolved import Runnable
from halogen.runtime.apis.ollama import answers as replies
from halogen.runtime.apis.ollama import catalogue, durations
from halogen.runtime.apis.ollama import stream as streams
from halogen.runtime.apis.ollama import to_openai as requests

# The client's own types check every answer; without the client (it is in the test extra) the
# module is skipped, not an import error: the durations and done_reason are also checked by
# tests/runtime/test_ollama_routes.py, which needs no client.
ollama = pytest.importorskip("ollama")
_types = pytest.importorskip("ollama._types")
ChatResponse = _types.ChatResponse
EmbeddingsResponse = _types.EmbeddingsResponse
EmbedResponse = _types.EmbedResponse
GenerateResponse = _types.GenerateResponse
ListResponse = _types.ListResponse
ProcessResponse = _types.ProcessResponse
ShowResponse = _types.ShowResponse

FIXTURES = Path(__file__).parent / "fixtures"
STARTED = 1_763_000_000_000_000_000  # ns since the epoch
NOW = STARTED + 2_500_000_000
LOAD = 700_000_000
RFC3339_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?Z$")
SSE_FIXTURES: dict[str, type[streams.ChatStream] | type[streams.GenerateStream]] = {
    "chat_stream.sse": streams.ChatStream,
    "chat_stream_no_usage.sse": streams.ChatStream,
    "chat_tool_calls_stream.sse": streams.ChatStream,
    "chat_thinking_stream.sse": streams.ChatStream,
    "completion_stream.sse": streams.GenerateStream,
}


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def fixture_json(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(fixture(name))
    return data


def upstream_events(sse: bytes) -> list[dict[str, Any]]:
    """The JSON events of a recorded SSE body, read the plain way."""
    events = []
    for line in sse.decode().splitlines():
        if line.startswith("data: ") and line != "data: [DONE]":
            events.append(json.loads(line[len("data: ") :]))
    return events


def upstream_text(sse: bytes, key: str) -> str:
    out = ""
    for event in upstream_events(sse):
        for choice in event.get("choices", []):
            source = choice.get("delta", choice)
            out += source.get(key) or ""
    return out


def upstream_timings(sse: bytes) -> dict[str, Any]:
    timings: list[dict[str, Any]] = [e["timings"] for e in upstream_events(sse) if "timings" in e]
    assert timings, "the recording has timings"
    return timings[-1]


def fixed_clock() -> int:
    return NOW


class SteppingClock:
    """Each reading is `step` ns after the previous one."""

    def __init__(self, start: int, step: int) -> None:
        self.now = start
        self.step = step

    def __call__(self) -> int:
        self.now += self.step
        return self.now


def translate(
    stream: streams.ChatStream | streams.GenerateStream, data: bytes, cuts: list[int]
) -> list[bytes]:
    out: list[bytes] = []
    start = 0
    for cut in sorted(set(cuts)):
        out += stream.feed(data[start:cut])
        start = cut
    out += stream.feed(data[start:])
    return out + stream.close()


def chat_stream(data: bytes, cuts: list[int] | None = None) -> list[bytes]:
    return translate(streams.ChatStream("smol:latest", STARTED, LOAD, clock=fixed_clock), data, cuts or [])


def generate_stream(data: bytes, cuts: list[int] | None = None) -> list[bytes]:
    return translate(
        streams.GenerateStream("smol:latest", STARTED, LOAD, clock=fixed_clock), data, cuts or []
    )


def parsed(lines: list[bytes]) -> list[dict[str, Any]]:
    objects = []
    for line in lines:
        assert line.endswith(b"\n") and line.count(b"\n") == 1, line
        assert line.strip(), "no blank lines"
        assert not line.startswith(b"data:"), line
        objects.append(json.loads(line))
    return objects


def runnable(model_id: str = "smollm2", **overrides: Any) -> Runnable:
    fields: dict[str, Any] = {
        "id": model_id,
        "argv": ("llama-server", "-m", "/models/SmolLM2-135M-Instruct.Q4_1.gguf", "--port", "5800"),
        "stop_argv": (),
        "proxy": "http://127.0.0.1:5800",
        "check_endpoint": "/health",
        "env": (),
        "group": "small",
        "metadata": {
            "architecture": "llama",
            "family": "llama",
            "parameterSize": "135M",
            "quantizationLevel": "Q4_1",
            "contextLength": 8192,
            "capabilities": ["completion", "tools"],
        },
    }
    fields.update(overrides)
    return Runnable(**fields)


def client(handler: Callable[[httpx.Request], httpx.Response]) -> ollama.Client:
    return ollama.Client(host="http://ollama.test", transport=httpx.MockTransport(handler))


def ndjson(lines: list[bytes]) -> httpx.Response:
    return httpx.Response(200, content=b"".join(lines), headers={"content-type": "application/x-ndjson"})


# --- requests ----------------------------------------------------------------------------------


def sent_by_client(call: Callable[[ollama.Client], Any], answer: dict[str, Any]) -> dict[str, Any]:
    """The JSON body the official client sends for `call`."""
    bodies: list[dict[str, Any]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        bodies.append(json.loads(request.content))
        return httpx.Response(200, json=answer)

    call(client(handler))
    assert len(bodies) == 1
    return bodies[0]


CHAT_DONE = {
    "model": "m",
    "created_at": "2025-01-01T00:00:00Z",
    "message": {"role": "assistant", "content": ""},
    "done": True,
}


def test_model_is_read_from_model_or_from_the_older_name_field() -> None:
    assert requests.model_name({"model": "smollm2:latest"}) == "smollm2:latest"
    assert requests.model_name({"name": "smollm2"}) == "smollm2"
    assert requests.model_name({"model": "", "name": "smollm2"}) == "smollm2"
    assert requests.model_name({"model": "  "}) is None
    assert requests.model_name({"model": 3}) is None
    assert requests.model_name({}) is None


@pytest.mark.parametrize(
    ("given", "seconds"),
    [
        (None, None),
        (0, 0.0),
        ("0", 0.0),
        (300, 300.0),
        (2.5, 2.5),
        ("300", 300.0),
        ("30s", 30.0),
        ("5m", 300.0),
        ("1h30m", 5400.0),
        ("1.5h", 5400.0),
        ("300ms", 0.3),
        ("+5m", 300.0),
        (-1, math.inf),
        ("-1", math.inf),
        ("-1s", math.inf),
        (-math.inf, math.inf),
        (1e12, math.inf),  # longer than anyone waits: no expiry date past year 9999
    ],
)
def test_keep_alive_is_read_as_ollama_reads_it(given: Any, seconds: float | None) -> None:
    assert durations.keep_alive(given) == seconds


@pytest.mark.parametrize("given", ["", "5 m", "5x", "1e3", "abc", True, [], {}, math.nan, math.inf])
def test_a_keep_alive_that_is_no_duration_is_refused(given: Any) -> None:
    with pytest.raises(durations.BadKeepAlive, match="keep_alive"):
        durations.keep_alive(given)


def test_errors_have_the_shape_the_client_reads() -> None:
    body = replies.error("model 'nope' not found")
    assert body == {"error": "model 'nope' not found"}
    assert ollama.ResponseError(json.dumps(body), 404).error == "model 'nope' not found"


def test_chat_streams_when_stream_is_omitted_and_asks_upstream_for_token_counts() -> None:
    out = requests.chat_to_openai({"model": "smollm2", "messages": [{"role": "user", "content": "hi"}]})
    assert out["stream"] is True
    assert out["stream_options"] == {"include_usage": True}
    assert out["messages"] == [{"role": "user", "content": "hi"}]
    assert out["model"] == "smollm2"


def test_chat_with_stream_false_is_not_streamed_upstream() -> None:
    body = sent_by_client(
        lambda c: c.chat("smollm2", messages=[{"role": "user", "content": "hi"}], stream=False), CHAT_DONE
    )
    out = requests.chat_to_openai(body)
    assert out["stream"] is False
    assert "stream_options" not in out


OPTION_CASES = [
    ("num_predict", 64, "max_tokens"),
    ("temperature", 0.25, "temperature"),
    ("top_p", 0.9, "top_p"),
    ("top_k", 20, "top_k"),
    ("seed", 42, "seed"),
    ("stop", ["</s>", "\n\n"], "stop"),
    ("repeat_penalty", 1.1, "repeat_penalty"),
    ("presence_penalty", 0.5, "presence_penalty"),
    ("frequency_penalty", 0.4, "frequency_penalty"),
    ("min_p", 0.05, "min_p"),
    ("typical_p", 0.95, "typical_p"),
    ("repeat_last_n", 32, "repeat_last_n"),
    ("mirostat", 2, "mirostat"),
    ("mirostat_tau", 4.0, "mirostat_tau"),
    ("mirostat_eta", 0.2, "mirostat_eta"),
    ("num_keep", 5, "n_keep"),
]


@pytest.mark.parametrize(("option", "value", "field"), OPTION_CASES)
@pytest.mark.parametrize("to_openai", [requests.chat_to_openai, requests.generate_to_openai])
def test_each_ollama_option_reaches_llama_server_under_its_own_name(
    option: str, value: Any, field: str, to_openai: Callable[[dict[str, Any]], dict[str, Any]]
) -> None:
    body = {"model": "smollm2", "messages": [], "prompt": "x", "options": {option: value}}
    out = to_openai(body)
    assert out[field] == value
    if field != option:
        assert option not in out


def test_all_options_sent_by_the_official_client_map_together() -> None:
    options = {opt: value for opt, value, _ in OPTION_CASES if opt in ollama.Options.model_fields}
    body = sent_by_client(
        lambda c: c.chat(
            "smollm2", messages=[{"role": "user", "content": "hi"}], options=options, stream=False
        ),
        CHAT_DONE,
    )
    out = requests.chat_to_openai(body)
    for option, value, field in OPTION_CASES:
        if option in options:
            assert out[field] == value, option


def test_load_time_options_like_num_ctx_are_not_forwarded() -> None:
    load_time = {
        "num_ctx": 8192,
        "num_gpu": 99,
        "num_thread": 4,
        "num_batch": 256,
        "numa": True,
        "use_mmap": False,
    }
    out = requests.chat_to_openai(
        {"model": "m", "messages": [], "options": {**load_time, "temperature": 0.1}}
    )
    assert out["temperature"] == 0.1
    for key in (*load_time, "n_ctx", "ctx_size", "options"):
        assert key not in out
    assert set(out) == {"model", "messages", "stream", "stream_options", "temperature"}


def test_unlimited_num_predict_leaves_the_server_default() -> None:
    for value in (-1, -2):
        assert "max_tokens" not in requests.chat_to_openai(
            {"model": "m", "messages": [], "options": {"num_predict": value}}
        )


def test_null_options_are_skipped() -> None:
    out = requests.chat_to_openai({"model": "m", "messages": [], "options": {"temperature": None, "seed": 0}})
    assert "temperature" not in out
    assert out["seed"] == 0


def test_format_json_asks_for_a_json_object() -> None:
    out = requests.chat_to_openai({"model": "m", "messages": [], "format": "json"})
    assert out["response_format"] == {"type": "json_object"}


def test_format_schema_asks_for_that_json_schema() -> None:
    schema = {"type": "object", "properties": {"age": {"type": "integer"}}, "required": ["age"]}
    body = sent_by_client(
        lambda c: c.chat("m", messages=[{"role": "user", "content": "x"}], format=schema, stream=False),
        CHAT_DONE,
    )
    out = requests.chat_to_openai(body)
    assert out["response_format"]["type"] == "json_schema"
    assert out["response_format"]["json_schema"]["schema"] == schema
    assert out["response_format"]["json_schema"]["name"]


def test_empty_format_asks_for_nothing() -> None:
    assert "response_format" not in requests.chat_to_openai({"model": "m", "messages": [], "format": ""})


@pytest.mark.parametrize(
    ("think", "kwargs"),
    [
        (True, {"enable_thinking": True}),
        (False, {"enable_thinking": False}),
        ("high", {"enable_thinking": True, "reasoning_effort": "high"}),
    ],
)
def test_think_becomes_the_chat_template_switch(think: bool | str, kwargs: dict[str, Any]) -> None:
    body = sent_by_client(
        lambda c: c.chat("m", messages=[{"role": "user", "content": "x"}], think=think, stream=False),
        CHAT_DONE,
    )
    assert requests.chat_to_openai(body)["chat_template_kwargs"] == kwargs


def test_think_left_out_leaves_the_template_default() -> None:
    assert "chat_template_kwargs" not in requests.chat_to_openai({"model": "m", "messages": []})


WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


def test_tools_pass_through_as_openai_tools() -> None:
    body = sent_by_client(
        lambda c: c.chat(
            "m", messages=[{"role": "user", "content": "x"}], tools=[WEATHER_TOOL], stream=False
        ),
        CHAT_DONE,
    )
    tools = requests.chat_to_openai(body)["tools"]
    assert len(tools) == 1
    assert tools[0]["type"] == "function"
    assert tools[0]["function"]["name"] == "get_weather"
    assert tools[0]["function"]["parameters"]["properties"] == {"city": {"type": "string"}}


def test_python_functions_given_as_tools_arrive_as_openai_tools() -> None:
    def add(a: int, b: int) -> int:
        """Add two numbers.

        Args:
            a: the first
            b: the second
        """
        return a + b

    body = sent_by_client(
        lambda c: c.chat("m", messages=[{"role": "user", "content": "x"}], tools=[add], stream=False),
        CHAT_DONE,
    )
    (tool,) = requests.chat_to_openai(body)["tools"]
    assert tool["type"] == "function"
    assert tool["function"]["name"] == "add"
    assert set(tool["function"]["parameters"]["properties"]) == {"a", "b"}


def test_assistant_tool_calls_get_json_string_arguments_and_tool_results_their_call_ids() -> None:
    history: list[dict[str, Any]] = [
        {"role": "user", "content": "Weather in Rome and Oslo?"},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [
                {"function": {"name": "get_weather", "arguments": {"city": "Rome"}}},
                {"function": {"name": "get_time", "arguments": {"zone": "CET", "hour24": True}}},
            ],
        },
        {"role": "tool", "content": "12:00", "tool_name": "get_time"},
        {"role": "tool", "content": "sun, 25 C", "tool_name": "get_weather"},
    ]
    body = sent_by_client(lambda c: c.chat("m", messages=history, stream=False), CHAT_DONE)
    messages = requests.chat_to_openai(body)["messages"]
    calls = messages[1]["tool_calls"]
    assert [c["type"] for c in calls] == ["function", "function"]
    assert [c["function"]["name"] for c in calls] == ["get_weather", "get_time"]
    assert [json.loads(c["function"]["arguments"]) for c in calls] == [
        {"city": "Rome"},
        {"zone": "CET", "hour24": True},
    ]
    assert all(isinstance(c["function"]["arguments"], str) for c in calls)
    ids = [c["id"] for c in calls]
    assert len(set(ids)) == 2 and all(ids)
    # Each result answers the call with its tool's name, whatever the order.
    assert messages[2] == {"role": "tool", "content": "12:00", "tool_call_id": ids[1], "name": "get_time"}
    assert messages[3] == {
        "role": "tool",
        "content": "sun, 25 C",
        "tool_call_id": ids[0],
        "name": "get_weather",
    }
    # Same history, same ids: the prompt (and llama-server's prompt cache) stays stable.
    assert requests.chat_to_openai(body)["messages"] == messages


def test_tool_call_ids_given_by_the_caller_are_kept() -> None:
    messages = requests.chat_to_openai(
        {
            "model": "m",
            "messages": [
                {
                    "role": "assistant",
                    "tool_calls": [{"id": "call_9", "function": {"name": "f", "arguments": "{}"}}],
                },
                {"role": "tool", "content": "ok", "tool_call_id": "call_9"},
            ],
        }
    )["messages"]
    assert messages[0]["tool_calls"][0]["id"] == "call_9"
    assert messages[0]["tool_calls"][0]["function"]["arguments"] == "{}"
    assert messages[1]["tool_call_id"] == "call_9"


PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\x00" * 16).decode()
JPEG = base64.b64encode(b"\xff\xd8\xff\xe0" + b"\x00" * 16).decode()


def test_images_become_image_url_parts_with_data_urls() -> None:
    message = {"role": "user", "content": "What is in these?", "images": [PNG, JPEG]}
    body = sent_by_client(lambda c: c.chat("m", messages=[message], stream=False), CHAT_DONE)
    (converted,) = requests.chat_to_openai(body)["messages"]
    assert converted["content"] == [
        {"type": "text", "text": "What is in these?"},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
        {"type": "image_url", "image_url": {"url": f"data:image/jpeg;base64,{JPEG}"}},
    ]


def test_an_image_without_text_is_a_single_image_part() -> None:
    (converted,) = requests.chat_to_openai({"model": "m", "messages": [{"role": "user", "images": [PNG]}]})[
        "messages"
    ]
    assert converted["content"] == [
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}}
    ]


def test_earlier_thinking_goes_back_as_reasoning_content() -> None:
    (converted,) = requests.chat_to_openai(
        {"model": "m", "messages": [{"role": "assistant", "content": "Hello!", "thinking": "A greeting."}]}
    )["messages"]
    assert converted == {"role": "assistant", "content": "Hello!", "reasoning_content": "A greeting."}


def test_generate_sends_system_and_prompt_as_one_completion_prompt() -> None:
    body = sent_by_client(
        lambda c: c.generate(
            "m", "The capital of France is", system="Answer in one word.", options={"seed": 3}
        ),
        {"model": "m", "created_at": "2025-01-01T00:00:00Z", "response": "", "done": True},
    )
    out = requests.generate_to_openai(body)
    assert out["prompt"] == "Answer in one word.\n\nThe capital of France is"
    assert out["stream"] is False
    assert out["seed"] == 3


def test_generate_streams_by_default_and_asks_for_usage() -> None:
    out = requests.generate_to_openai({"model": "m", "prompt": "Hi"})
    assert out == {"model": "m", "prompt": "Hi", "stream": True, "stream_options": {"include_usage": True}}


def test_generate_formats_use_llama_servers_json_schema_field() -> None:
    # llama-server's /v1/completions ignores response_format, so the grammar goes in json_schema.
    schema = {"type": "object", "properties": {"a": {"type": "string"}}}
    assert requests.generate_to_openai({"model": "m", "prompt": "x", "format": "json"})["json_schema"] == {
        "type": "object"
    }
    assert (
        requests.generate_to_openai({"model": "m", "prompt": "x", "format": schema})["json_schema"] == schema
    )
    assert "response_format" not in requests.generate_to_openai(
        {"model": "m", "prompt": "x", "format": schema}
    )


def test_embed_sends_a_string_or_a_list_as_input() -> None:
    answer = {"model": "m", "embeddings": [[0.0]]}
    one = sent_by_client(lambda c: c.embed("emb", "Why is the sky blue?"), answer)
    many = sent_by_client(lambda c: c.embed("emb", ["a", "b"]), answer)
    assert requests.embed_to_openai(one) == {
        "model": "emb",
        "input": "Why is the sky blue?",
        "encoding_format": "float",
    }
    assert requests.embed_to_openai(many)["input"] == ["a", "b"]


def test_legacy_embeddings_send_the_prompt_and_ask_for_raw_vectors() -> None:
    body = sent_by_client(lambda c: c.embeddings("emb", "Why is the sky blue?"), {"embedding": [0.0]})
    out = requests.embed_to_openai(body)
    assert out["input"] == "Why is the sky blue?"
    assert out["embd_normalize"] == -1  # Ollama normalizes /api/embed only


# --- streams -----------------------------------------------------------------------------------


def test_a_recorded_chat_stream_becomes_ndjson_the_client_accepts() -> None:
    sse = fixture("chat_stream.sse")
    objects = parsed(chat_stream(sse))
    for obj in objects:
        ChatResponse.model_validate(obj)
        assert obj["message"]["role"] == "assistant"
        assert isinstance(obj["message"]["content"], str)
        assert obj["model"] == "smol:latest"
        assert RFC3339_Z.match(obj["created_at"])
    assert [o["done"] for o in objects] == [False] * (len(objects) - 1) + [True]
    assert "".join(o["message"]["content"] for o in objects) == upstream_text(sse, "content")
    assert all(o["message"]["content"] for o in objects[:-1]), "no empty chunks before the last"
    assert objects[-1]["message"] == {"role": "assistant", "content": ""}


def test_the_last_line_carries_counts_and_durations_from_llama_server_timings() -> None:
    for name in ("chat_stream.sse", "chat_stream_no_usage.sse", "completion_stream.sse"):
        sse = fixture(name)
        last = parsed(translate(SSE_FIXTURES[name]("m", STARTED, LOAD, clock=fixed_clock), sse, []))[-1]
        timings = upstream_timings(sse)
        assert last["prompt_eval_count"] == timings["prompt_n"] + timings["cache_n"], name
        assert last["prompt_eval_duration"] == round(timings["prompt_ms"] * 1_000_000)
        assert last["eval_count"] == timings["predicted_n"]
        assert last["eval_duration"] == round(timings["predicted_ms"] * 1_000_000)
        assert last["total_duration"] == NOW - STARTED
        assert last["load_duration"] == LOAD
        for key in (
            "prompt_eval_count",
            "eval_count",
            "prompt_eval_duration",
            "eval_duration",
            "total_duration",
        ):
            assert type(last[key]) is int, key


def test_counts_agree_with_usage_when_both_are_sent() -> None:
    sse = fixture("chat_stream.sse")
    usage = next(e["usage"] for e in upstream_events(sse) if "usage" in e)
    last = parsed(chat_stream(sse))[-1]
    assert last["prompt_eval_count"] == usage["prompt_tokens"]
    assert last["eval_count"] == usage["completion_tokens"]


def test_the_done_reason_is_the_upstream_finish_reason() -> None:
    assert parsed(chat_stream(fixture("chat_stream.sse")))[-1]["done_reason"] == "length"
    assert parsed(chat_stream(fixture("chat_thinking_stream.sse")))[-1]["done_reason"] == "stop"
    assert parsed(chat_stream(fixture("chat_tool_calls_stream.sse")))[-1]["done_reason"] == "tool_calls"


def sse_events(*events: dict[str, Any], done: bool = True) -> bytes:
    body = b"".join(b"data: " + json.dumps(e).encode() + b"\n\n" for e in events)
    return body + (b"data: [DONE]\n\n" if done else b"")


def delta(content: str | None = None, finish: str | None = None, **extra: Any) -> dict[str, Any]:
    d: dict[str, Any] = dict(extra)
    if content is not None:
        d["content"] = content
    return {"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": d, "finish_reason": finish}]}


def test_without_timings_the_counts_come_from_usage_and_the_durations_from_the_clock() -> None:
    sse = sse_events(
        delta("Hel"),
        delta("lo"),
        delta(finish="stop"),
        {"choices": [], "usage": {"prompt_tokens": 9, "completion_tokens": 2, "total_tokens": 11}},
    )
    clock = SteppingClock(STARTED, 1_000_000)
    stream = streams.ChatStream("m", STARTED, LOAD, clock=clock)
    objects = parsed(stream.feed(sse) + stream.close())
    last = objects[-1]
    assert last["prompt_eval_count"] == 9
    assert last["eval_count"] == 2
    assert 0 < last["eval_duration"] < last["total_duration"]
    assert last["total_duration"] == clock.now - STARTED
    ChatResponse.model_validate(last)


def test_without_timings_or_usage_the_counts_are_zero_not_missing() -> None:
    last = parsed(chat_stream(sse_events(delta("x"), delta(finish="stop"))))[-1]
    assert last["prompt_eval_count"] == 0
    assert last["eval_count"] == 0
    assert last["done_reason"] == "stop"


@settings(max_examples=150, deadline=None)
@given(name=st.sampled_from(sorted(SSE_FIXTURES)), data=st.data())
def test_any_split_of_a_recorded_stream_gives_the_same_ndjson(name: str, data: st.DataObject) -> None:
    sse = fixture(name)
    cuts = data.draw(st.lists(st.integers(min_value=0, max_value=len(sse)), max_size=40))
    whole = translate(SSE_FIXTURES[name]("m", STARTED, LOAD, clock=fixed_clock), sse, [])
    split = translate(SSE_FIXTURES[name]("m", STARTED, LOAD, clock=fixed_clock), sse, cuts)
    assert split == whole


def test_a_stream_fed_one_byte_at_a_time_keeps_multibyte_characters_whole() -> None:
    sse = sse_events(delta("Grüße 🌍"), delta(" 28°C"), delta(finish="stop"))
    objects = parsed(chat_stream(sse, cuts=list(range(len(sse)))))
    assert "".join(o["message"]["content"] for o in objects) == "Grüße 🌍 28°C"


def test_crlf_line_endings_and_sse_comments_are_understood() -> None:
    sse = sse_events(delta("a"), delta("b"), delta(finish="stop")).replace(b"\n", b"\r\n")
    sse = b": keep-alive\r\n\r\nevent: message\r\n" + sse
    objects = parsed(chat_stream(sse))
    assert [o["message"]["content"] for o in objects] == ["a", "b", ""]


def test_streamed_tool_call_fragments_are_assembled_into_whole_calls() -> None:
    sse = fixture("chat_tool_calls_stream.sse")
    objects = parsed(chat_stream(sse))
    with_calls = [o for o in objects if o["message"].get("tool_calls")]
    assert len(with_calls) == 1, "tool calls are emitted once"
    message = ChatResponse.model_validate(with_calls[0]).message
    assert message.tool_calls is not None
    assert [(c.function.name, dict(c.function.arguments)) for c in message.tool_calls] == [
        ("get_weather", {"city": "Rome"}),
        ("get_weather", {"city": "Oslo"}),
    ]
    # The ids llama-server gave are kept, so OpenAI-style follow-ups can refer to them.
    first_fragments = [
        tc
        for e in upstream_events(sse)
        for c in e["choices"]
        for tc in c["delta"].get("tool_calls", [])
        if "id" in tc
    ]
    assert [c["id"] for c in with_calls[0]["message"]["tool_calls"]] == [tc["id"] for tc in first_fragments]
    assert objects[-1]["done"] is True
    assert objects.index(with_calls[0]) < len(objects) - 1


def tool_fragment(
    index: int, arguments: str, name: str | None = None, call_id: str | None = None
) -> dict[str, Any]:
    fragment: dict[str, Any] = {"index": index, "function": {"arguments": arguments}}
    if name:
        fragment["function"]["name"] = name
        fragment["type"] = "function"
    if call_id:
        fragment["id"] = call_id
    return delta(tool_calls=[fragment])


def test_tool_calls_cut_off_before_a_finish_reason_are_emitted_by_close() -> None:
    sse = sse_events(
        tool_fragment(0, '{"city": ', "get_weather", "c1"), tool_fragment(0, '"Paris"}'), done=False
    )
    stream = streams.ChatStream("m", STARTED, LOAD, clock=fixed_clock)
    assert stream.feed(sse) == []
    objects = parsed(stream.close())
    assert objects[0]["message"]["tool_calls"] == [
        {"id": "c1", "function": {"index": 0, "name": "get_weather", "arguments": {"city": "Paris"}}}
    ]
    assert objects[1]["done"] is True
    assert len(objects) == 2


def test_a_tool_call_with_empty_arguments_has_an_empty_object() -> None:
    sse = sse_events(tool_fragment(0, "", "now"), delta(finish="tool_calls"))
    (calls,) = [o["message"]["tool_calls"] for o in parsed(chat_stream(sse)) if "tool_calls" in o["message"]]
    assert calls[0]["function"]["arguments"] == {}


def test_tool_call_arguments_that_are_not_json_end_the_stream_with_an_error() -> None:
    sse = sse_events(delta("ok"), tool_fragment(0, '{"city": Par', "get_weather"), delta(finish="tool_calls"))
    objects = parsed(chat_stream(sse))
    assert objects[0]["message"]["content"] == "ok"
    assert "get_weather" in objects[-1]["error"]
    assert not any(o.get("done") for o in objects)


def test_reasoning_content_streams_as_message_thinking() -> None:
    sse = fixture("chat_thinking_stream.sse")
    objects = parsed(chat_stream(sse))
    for obj in objects:
        ChatResponse.model_validate(obj)
    thinking = "".join(o["message"].get("thinking", "") for o in objects)
    assert thinking == upstream_text(sse, "reasoning_content") != ""
    assert "".join(o["message"]["content"] for o in objects) == upstream_text(sse, "content") == "Hello!"


ERROR_EVENT = (
    b'data: {"error":{"code":500,"message":"Context size has been exceeded.","type":"server_error"}}\n\n'
)


def recorded_then_error(name: str, events_before: int) -> bytes:
    lines = [line for line in fixture(name).split(b"\n\n") if line.strip()]
    return b"\n\n".join(lines[:events_before]) + b"\n\n" + ERROR_EVENT


def test_an_error_mid_stream_ends_the_ndjson_with_an_error_line() -> None:
    sse = recorded_then_error("chat_stream.sse", 4)
    stream = streams.ChatStream("m", STARTED, LOAD, clock=fixed_clock)
    lines = stream.feed(sse)
    objects = parsed(lines)
    assert objects[-1] == {"error": "Context size has been exceeded."}
    assert all(not o.get("done") for o in objects)
    assert len([o for o in objects if "error" in o]) == 1
    # Whatever arrives afterwards, nothing follows the error line.
    assert stream.feed(b"data: [DONE]\n\n") == []
    assert stream.close() == []


def test_nothing_follows_an_error_or_the_done_line_even_within_one_read() -> None:
    after = sse_events(delta("AFTERWARDS"), delta(finish="stop"))
    for ending in (ERROR_EVENT, b"data: [DONE]\n\n"):
        objects = parsed(chat_stream(sse_events(delta("a"), done=False) + ending + after))
        assert [o["message"]["content"] for o in objects if "message" in o and not o["done"]] == ["a"]
        assert "AFTERWARDS" not in json.dumps(objects)
        assert len([o for o in objects if o.get("done") or "error" in o]) == 1


def test_the_official_client_raises_the_mid_stream_error() -> None:
    sse = recorded_then_error("chat_stream.sse", 5)
    c = client(lambda request: ndjson(chat_stream(sse)))
    received: list[str] = []
    with pytest.raises(ollama.ResponseError, match="Context size has been exceeded"):
        for part in c.chat("m", messages=[{"role": "user", "content": "hi"}], stream=True):
            received.append(part.message.content or "")
    # The first event is llama-server's role-only delta, which has nothing to say.
    assert "".join(received) == upstream_text(sse, "content") != ""
    assert len(received) == 4


def test_an_sse_error_field_is_an_error_too() -> None:
    objects = parsed(
        generate_stream(b'data: {"choices":[{"text":"a","index":0}]}\n\nerror: {"message":"boom"}\n\n')
    )
    assert objects[-1] == {"error": "boom"}


def test_a_line_that_is_not_json_is_reported_not_swallowed() -> None:
    objects = parsed(chat_stream(sse_events(delta("a"), done=False) + b"data: {not json\n\n"))
    assert "not JSON" in objects[-1]["error"]


def test_the_done_line_is_emitted_exactly_once() -> None:
    sse = fixture("chat_stream.sse")
    stream = streams.ChatStream("m", STARTED, LOAD, clock=fixed_clock)
    lines = stream.feed(sse)
    lines += stream.close() + stream.close()
    lines += stream.feed(b"data: [DONE]\n\n")
    assert len([o for o in parsed(lines) if o["done"]]) == 1


def test_close_answers_done_when_the_upstream_ends_without_done() -> None:
    sse = b"\n\n".join(
        line for line in fixture("completion_stream.sse").split(b"\n\n") if b"[DONE]" not in line
    )
    assert b"[DONE]" not in sse
    stream = streams.GenerateStream("m", STARTED, LOAD, clock=fixed_clock)
    before = parsed(stream.feed(sse))
    assert not any(o["done"] for o in before)
    after = parsed(stream.close())
    assert len(after) == 1 and after[0]["done"] is True
    assert after[0]["done_reason"] == "length"


def test_an_event_without_a_trailing_newline_is_read_at_close() -> None:
    stream = streams.ChatStream("m", STARTED, LOAD, clock=fixed_clock)
    assert stream.feed(b'data: {"choices":[{"index":0,"delta":{"content":"tail"}}]}') == []
    objects = parsed(stream.close())
    assert [o["message"]["content"] for o in objects] == ["tail", ""]


def test_created_at_is_rfc3339_utc_with_z() -> None:
    (obj,) = parsed(streams.ChatStream("m", STARTED, 0, clock=fixed_clock).close())
    assert RFC3339_Z.match(obj["created_at"])
    stamp = obj["created_at"]
    assert stamp.endswith(".500000000Z")
    assert datetime.fromisoformat(stamp[:26] + "+00:00") == datetime.fromtimestamp(
        NOW // 10**9, UTC
    ) + timedelta(microseconds=500_000)


def test_a_recorded_completion_stream_becomes_generate_chunks() -> None:
    sse = fixture("completion_stream.sse")
    objects = parsed(generate_stream(sse))
    for obj in objects:
        GenerateResponse.model_validate(obj)
        assert set(obj) >= {"model", "created_at", "response", "done"}
    assert "".join(o["response"] for o in objects) == upstream_text(sse, "text")
    assert [o["done"] for o in objects].count(True) == 1 and objects[-1]["done"]


def test_the_official_client_reads_a_whole_translated_chat_stream() -> None:
    sse = fixture("chat_thinking_stream.sse")
    c = client(lambda request: ndjson(chat_stream(sse)))
    parts = list(c.chat("m", messages=[{"role": "user", "content": "Say hello."}], stream=True, think=True))
    assert "".join(p.message.content or "" for p in parts) == "Hello!"
    assert "".join(p.message.thinking or "" for p in parts) == upstream_text(sse, "reasoning_content")
    assert parts[-1].done and parts[-1].eval_count == upstream_timings(sse)["predicted_n"]


def test_the_official_client_reads_a_translated_generate_stream() -> None:
    sse = fixture("completion_stream.sse")
    c = client(lambda request: ndjson(generate_stream(sse)))
    parts = list(c.generate("m", "The capital of France is", stream=True))
    assert "".join(p.response or "" for p in parts) == upstream_text(sse, "text")
    assert parts[-1].done_reason == "length"


# --- non-streaming answers ---------------------------------------------------------------------


def test_a_recorded_chat_answer_becomes_one_chat_response() -> None:
    upstream = fixture_json("chat.json")
    answer = replies.chat_response("smol:latest", upstream, STARTED, LOAD, clock=fixed_clock)
    response = ChatResponse.model_validate(answer)
    assert response.message.role == "assistant"
    assert response.message.content == upstream["choices"][0]["message"]["content"]
    assert response.done is True
    assert response.done_reason == upstream["choices"][0]["finish_reason"]
    timings = upstream["timings"]
    assert (
        answer["prompt_eval_count"]
        == timings["prompt_n"] + timings["cache_n"]
        == upstream["usage"]["prompt_tokens"]
    )
    assert answer["eval_count"] == timings["predicted_n"]
    assert answer["eval_duration"] == round(timings["predicted_ms"] * 1_000_000)
    assert answer["total_duration"] == NOW - STARTED
    assert answer["load_duration"] == LOAD
    assert RFC3339_Z.match(answer["created_at"])


def test_a_recorded_tool_call_answer_has_object_arguments() -> None:
    upstream = fixture_json("chat_tool_calls.json")
    answer = replies.chat_response("m", upstream, STARTED, LOAD, clock=fixed_clock)
    calls = ChatResponse.model_validate(answer).message.tool_calls
    assert calls is not None
    expected = [
        json.loads(c["function"]["arguments"]) for c in upstream["choices"][0]["message"]["tool_calls"]
    ]
    assert [dict(c.function.arguments) for c in calls] == expected == [{"city": "Rome"}, {"city": "Oslo"}]
    assert answer["done_reason"] == "tool_calls"


def test_a_recorded_thinking_answer_has_message_thinking() -> None:
    upstream = fixture_json("chat_thinking.json")
    answer = replies.chat_response("m", upstream, STARTED, LOAD, clock=fixed_clock)
    message = ChatResponse.model_validate(answer).message
    assert message.thinking == upstream["choices"][0]["message"]["reasoning_content"]
    assert message.content == "Hello!"


def test_a_recorded_completion_answer_becomes_one_generate_response() -> None:
    upstream = fixture_json("completion.json")
    answer = replies.generate_response("m", upstream, STARTED, LOAD, clock=fixed_clock)
    response = GenerateResponse.model_validate(answer)
    assert response.response == upstream["choices"][0]["text"]
    assert response.done and response.done_reason == "length"
    assert response.eval_count == upstream["timings"]["predicted_n"]


def test_the_official_client_reads_non_streaming_answers() -> None:
    chat = replies.chat_response("m", fixture_json("chat.json"), STARTED, LOAD, clock=fixed_clock)
    gen = replies.generate_response("m", fixture_json("completion.json"), STARTED, LOAD, clock=fixed_clock)
    answers = {"/api/chat": chat, "/api/generate": gen}
    c = client(lambda request: httpx.Response(200, json=answers[request.url.path]))
    assert (
        c.chat("m", messages=[{"role": "user", "content": "x"}]).message.content == chat["message"]["content"]
    )
    assert c.generate("m", "x").response == gen["response"]


def test_an_upstream_error_body_is_untranslatable_not_an_empty_answer() -> None:
    upstream = {
        "error": {"code": 400, "message": "Cannot use custom grammar constraints with tools.", "type": "x"}
    }
    with pytest.raises(replies.Untranslatable, match="custom grammar"):
        replies.chat_response("m", upstream, STARTED, LOAD)
    with pytest.raises(replies.Untranslatable):
        replies.generate_response("m", {"choices": []}, STARTED, LOAD)
    with pytest.raises(replies.Untranslatable):
        replies.embed_response("m", upstream)


def test_embed_answers_every_vector_in_input_order_with_the_token_count() -> None:
    upstream = fixture_json("embeddings.json")
    shuffled = {**upstream, "data": list(reversed(upstream["data"]))}
    answer = replies.embed_response("emb", shuffled, STARTED, LOAD, clock=fixed_clock)
    response = EmbedResponse.model_validate(answer)
    assert [list(v) for v in response.embeddings] == [d["embedding"] for d in upstream["data"]]
    assert answer["prompt_eval_count"] == upstream["usage"]["prompt_tokens"]
    assert answer["total_duration"] == NOW - STARTED
    assert answer["model"] == "emb"


def test_legacy_embeddings_answer_one_vector() -> None:
    upstream = fixture_json("embedding.json")
    answer = replies.embeddings_response("emb", upstream)
    assert list(EmbeddingsResponse.model_validate(answer).embedding) == upstream["data"][0]["embedding"]
    assert set(answer) == {"embedding"}


def test_the_official_client_reads_embed_answers() -> None:
    embed = replies.embed_response("emb", fixture_json("embeddings.json"))
    legacy = replies.embeddings_response("emb", fixture_json("embedding.json"))
    answers = {"/api/embed": embed, "/api/embeddings": legacy}
    c = client(lambda request: httpx.Response(200, json=answers[request.url.path]))
    assert len(c.embed("emb", ["a", "b"]).embeddings) == 2
    assert len(c.embeddings("emb", "a").embedding) == len(legacy["embedding"]) > 0


# --- models ------------------------------------------------------------------------------------


def test_tags_list_names_with_a_tag_like_ollama_does() -> None:
    models = [runnable("smollm2"), runnable("qwen3:8b"), runnable("hf.co/org/model")]
    names = [m["name"] for m in catalogue.tags(models, {})["models"]]
    assert names == ["hf.co/org/model:latest", "qwen3:8b", "smollm2:latest"]
    assert all(m["model"] == m["name"] for m in catalogue.tags(models, {})["models"])


def test_tags_carry_size_digest_and_details_from_metadata() -> None:
    listing = catalogue.tags([runnable()], {"smollm2": 98_362_432})
    ListResponse.model_validate(listing)
    (entry,) = listing["models"]
    assert entry["size"] == 98_362_432
    assert re.fullmatch(r"[0-9a-f]{64}", entry["digest"])
    assert entry["details"] == {
        "parent_model": "",
        "format": "gguf",
        "family": "llama",
        "families": ["llama"],
        "parameter_size": "135M",
        "quantization_level": "Q4_1",
    }
    assert RFC3339_Z.match(entry["modified_at"])


def test_tags_leave_out_unlisted_models_and_default_unknown_sizes_to_zero() -> None:
    listing = catalogue.tags([runnable("a"), runnable("hidden", unlisted=True)], {})
    assert [(m["name"], m["size"]) for m in listing["models"]] == [("a:latest", 0)]


def test_digests_are_deterministic_and_follow_the_command() -> None:
    def digest(model: Runnable) -> str:
        return str(catalogue.tags([model], {})["models"][0]["digest"])

    assert digest(runnable()) == digest(runnable())
    assert digest(runnable()) != digest(runnable("other"))
    assert digest(runnable()) != digest(runnable(argv=("llama-server", "-m", "/models/other.gguf")))


def test_tags_report_the_modification_time_given() -> None:
    when = datetime(2025, 3, 4, 5, 6, 7, 250000, tzinfo=UTC)
    (entry,) = catalogue.tags([runnable()], {}, modified={"smollm2": when})["models"]
    assert entry["modified_at"] == "2025-03-04T05:06:07.25Z"
    assert ListResponse.model_validate({"models": [entry]}).models[0].modified_at == when


def test_a_model_without_metadata_still_lists_with_empty_details() -> None:
    (entry,) = catalogue.tags([runnable(metadata={})], {})["models"]
    assert entry["details"]["format"] == "gguf"
    assert entry["details"]["family"] == ""
    ListResponse.model_validate({"models": [entry]})


def test_show_has_model_info_with_architecture_and_context_length() -> None:
    answer = catalogue.show(runnable(name="SmolLM2 135M"), 98_362_432)
    response = ShowResponse.model_validate(answer)
    assert response.modelinfo is not None
    assert response.modelinfo["general.architecture"] == "llama"
    assert response.modelinfo["llama.context_length"] == 8192
    assert response.capabilities == ["completion", "tools"]
    assert response.details is not None and response.details.quantization_level == "Q4_1"
    assert response.modified_at is not None
    assert "FROM /models/SmolLM2-135M-Instruct.Q4_1.gguf" in (response.modelfile or "")
    assert answer["parameters"] == "num_ctx 8192"


def test_show_reads_the_context_from_the_command_when_metadata_has_none() -> None:
    model = runnable(
        metadata={"architecture": "qwen3"}, argv=("llama-server", "-m", "x.gguf", "--ctx-size", "16384")
    )
    info = catalogue.show(model, 0)["model_info"]
    assert info["qwen3.context_length"] == 16384
    model = runnable(metadata={"architecture": "qwen3"}, argv=("llama-server", "-c=2048"))
    assert catalogue.show(model, 0)["model_info"]["qwen3.context_length"] == 2048


def test_show_defaults_capabilities_to_completion_and_still_names_a_context() -> None:
    answer = catalogue.show(runnable(metadata={}, argv=("llama-server",)), 0)
    assert answer["capabilities"] == ["completion"]
    arch = answer["model_info"]["general.architecture"]
    assert isinstance(answer["model_info"][f"{arch}.context_length"], int)
    ShowResponse.model_validate(answer)


def test_the_official_client_reads_tags_show_and_ps() -> None:
    model = runnable()
    expires = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
    answers = {
        "/api/tags": catalogue.tags([model], {"smollm2": 1234}),
        "/api/show": catalogue.show(model, 1234),
        "/api/ps": catalogue.ps([catalogue.RunningModel(model, 1234, expires)]),
    }
    c = client(lambda request: httpx.Response(200, json=answers[request.url.path]))
    listed = c.list().models
    assert [(m.model, int(m.size or 0)) for m in listed] == [("smollm2:latest", 1234)]
    shown = c.show("smollm2:latest")
    assert shown.modelinfo is not None and shown.modelinfo["llama.context_length"] == 8192
    running = c.ps().models
    assert running[0].model == "smollm2:latest"
    assert running[0].expires_at == expires


def test_ps_lists_running_models_with_their_expiry() -> None:
    cpu = runnable("cpu", argv=("llama-server", "-m", "a.gguf", "-ngl", "0"))
    gpu = runnable("gpu", argv=("llama-server", "-m", "b.gguf", "--n-gpu-layers", "99"))
    expires = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
    answer = catalogue.ps(
        [catalogue.RunningModel(gpu, 2000, None), catalogue.RunningModel(cpu, 1000, expires)]
    )
    response = ProcessResponse.model_validate(answer)
    assert [m.name for m in response.models] == ["cpu:latest", "gpu:latest"]
    cpu_entry, gpu_entry = answer["models"]
    assert cpu_entry["expires_at"] == "2030-01-02T03:04:05Z"
    assert (cpu_entry["size"], cpu_entry["size_vram"]) == (1000, 0)
    assert (gpu_entry["size"], gpu_entry["size_vram"]) == (2000, 2000)
    # No TTL: it never expires, which Ollama shows as a far-future time.
    assert response.models[1].expires_at is not None and response.models[1].expires_at.year > 2100
    assert cpu_entry["context_length"] == 8192
    assert cpu_entry["digest"] == catalogue.tags([cpu], {})["models"][0]["digest"]


def test_ps_with_nothing_running_is_an_empty_list() -> None:
    assert catalogue.ps([]) == {"models": []}


def test_version_is_a_real_recent_ollama_version() -> None:
    answer = catalogue.version()
    assert set(answer) == {"version"}
    major, minor, patch = (int(p) for p in answer["version"].split("."))
    assert (major, minor, patch) >= (0, 6, 4)  # clients gate capabilities on this


def _all_lines() -> Iterator[bytes]:
    for name, cls in SSE_FIXTURES.items():
        yield from translate(cls("m", STARTED, LOAD, clock=fixed_clock), fixture(name), [])


def test_every_translated_line_of_every_recording_validates_with_the_client_types() -> None:
    count = 0
    for line in _all_lines():
        obj = json.loads(line)
        if "message" in obj:
            ChatResponse.model_validate(obj)
        else:
            GenerateResponse.model_validate(obj)
            assert "response" in obj
        count += 1
    assert count > 20


def test_a_runaway_upstream_line_ends_the_stream_with_an_error_instead_of_growing_memory() -> None:
    stream = streams.ChatStream("m", STARTED, LOAD, clock=lambda: NOW)
    out: list[bytes] = []
    piece = b"data: {" + b"x" * 65536
    for _ in range(streams.MAX_EVENT_BYTES // len(piece) + 2):
        out += stream.feed(piece)
        assert sum(len(p) for p in out) < 1024  # nothing of the runaway line is echoed
    out += stream.feed(b"data: [DONE]\n") + stream.close()
    lines = [json.loads(line) for line in out]
    assert len(lines) == 1 and "not JSON" in lines[0]["error"]
