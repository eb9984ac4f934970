"""`halogen serve` through the official `anthropic` client (Messages API) and the official
`openai` client's Responses API, a `setParamsByID` variant, and a second `halogen serve` that
reaches this one as a peer, with a real llama-server on SmolLM2 behind it."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import anthropic
import httpx
import ollama
import openai
import pytest
import yaml

from .harness import free_port_run, metric
from .processes import Serving, children, halogen_serve, serving_config

pytestmark = [pytest.mark.real, pytest.mark.slow]

PROMPT = "Say hi in three words."
# The variant's params: llama-server answers with at most 2 tokens and 3 alternatives for each.
BRIEF = {"max_tokens": 2, "logprobs": True, "top_logprobs": 3}


def config(llama_server: Path, gguf: Path) -> dict[str, object]:
    cmd = f"{llama_server} --host 127.0.0.1 --port ${{PORT}} -m {gguf} -c 1024 -t 1 --jinja"
    return {
        "healthCheckTimeout": 60,
        "startPort": free_port_run(1),
        "models": {
            "smollm2": {
                "cmd": cmd,
                "aliases": ["claude-haiku"],
                "filters": {"setParamsByID": {"smollm2:brief": BRIEF}},
            }
        },
        # A selector whose one target is the variant: the request goes on as the variant.
        "selectors": {"quick": {"strategy": "pin", "targets": ["smollm2:brief"]}},
    }


class Served(Serving):
    def anthropic(self) -> anthropic.Anthropic:
        return anthropic.Anthropic(base_url=self.url, api_key="unused", timeout=120, max_retries=0)

    def openai(self) -> openai.OpenAI:
        return openai.OpenAI(base_url=f"{self.url}/v1", api_key="unused", timeout=120, max_retries=0)

    def metrics(self) -> str:
        return httpx.get(self.url + "/metrics", timeout=30).text


@pytest.fixture(scope="module")
def served(
    tmp_path_factory: pytest.TempPathFactory, llama_server: Path, smollm2_gguf: Path
) -> Iterator[Served]:
    with serving_config(tmp_path_factory.mktemp("serve"), config(llama_server, smollm2_gguf)) as serving:
        yield Served(serving.process, serving.url, serving.log)


def generated(served: Served) -> tuple[int, int]:
    """The prompt and generated tokens /metrics has counted for the model so far."""
    text = served.metrics()
    prompt = metric(text, "halogen_prompt_tokens_total").get("smollm2", "0")
    output = metric(text, "halogen_generated_tokens_total").get("smollm2", "0")
    return int(prompt), int(output)


def test_anthropic_messages_answer_and_their_usage_reaches_the_metrics(served: Served) -> None:
    before = generated(served)
    message = served.anthropic().messages.create(
        model="claude-haiku",
        max_tokens=8,
        messages=[{"role": "user", "content": PROMPT}],
        extra_body={"temperature": 0},
    )
    assert message.type == "message" and message.role == "assistant"
    assert message.content and message.content[0].type == "text" and message.content[0].text
    assert message.stop_reason in ("end_turn", "max_tokens")
    assert 0 < message.usage.output_tokens <= 8 and message.usage.input_tokens > 5
    after = generated(served)
    assert after[0] - before[0] >= message.usage.input_tokens
    assert after[1] - before[1] == message.usage.output_tokens


def test_anthropic_messages_stream_event_by_event_with_usage_in_the_metrics(served: Served) -> None:
    before = generated(served)
    kinds: list[str] = []
    texts: list[str] = []
    # Greedy, so the reply is the same each run; sampled, one in twenty opened with an emoji
    # (the test below).
    with served.anthropic().messages.stream(
        model="smollm2",
        max_tokens=8,
        extra_body={"temperature": 0},  # this client no longer has the parameter
        messages=[{"role": "user", "content": PROMPT}],
    ) as stream:
        for event in stream:
            kinds.append(event.type)
            if event.type == "content_block_delta" and event.delta.type == "text_delta":
                texts.append(event.delta.text)
        final = stream.get_final_message()
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop"
    assert "message_delta" in kinds and len(texts) > 1  # passed on as the model made them
    assert "".join(texts) == final.content[0].text  # type: ignore[union-attr]
    after = generated(served)
    assert after[1] - before[1] == final.usage.output_tokens > 0
    assert after[0] > before[0]


def test_an_anthropic_stream_that_opens_with_an_emoji_still_begins_with_message_start(
    served: Served,
) -> None:
    # SmolLM2 answers this greedily with an emoji whose first token is part of a UTF-8
    # sequence; llama-server then writes no message_start (to_json_anthropic in
    # tools/server/server-task.cpp), and the client would refuse the stream.
    with served.anthropic().messages.stream(
        model="smollm2",
        max_tokens=8,
        extra_body={"temperature": 0},  # this client no longer has the parameter
        messages=[{"role": "user", "content": "\N{SLIGHTLY SMILING FACE}"}],
    ) as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_message()
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop"
    text = final.content[0].text  # type: ignore[union-attr]
    assert text and len(text[0].encode()) > 1  # it did open with a multi-byte character
    assert final.id.startswith("msg_")  # the proxy's message_start: llama-server sent none
    assert final.model == "smollm2" and final.usage.output_tokens > 0


def test_anthropic_count_tokens_counts_the_prompt(served: Served) -> None:
    short = served.anthropic().messages.count_tokens(
        model="smollm2", messages=[{"role": "user", "content": "hi"}]
    )
    long = served.anthropic().messages.count_tokens(
        model="smollm2", messages=[{"role": "user", "content": "hi " * 40}]
    )
    assert 0 < short.input_tokens < long.input_tokens


def test_an_unknown_model_is_an_anthropic_not_found_error(served: Served) -> None:
    with pytest.raises(anthropic.NotFoundError) as raised:
        served.anthropic().messages.create(
            model="no-such-model", max_tokens=4, messages=[{"role": "user", "content": "hi"}]
        )
    assert raised.value.status_code == 404
    assert raised.value.body == {
        "type": "error",
        "error": {"type": "not_found_error", "message": "model 'no-such-model' not found"},
    }


def test_openai_responses_answer_with_usage_in_the_metrics(served: Served) -> None:
    before = generated(served)
    response = served.openai().responses.create(
        model="smollm2", input=PROMPT, max_output_tokens=8, temperature=0
    )
    assert response.status == "completed"
    assert response.output_text
    assert response.usage is not None and 0 < response.usage.output_tokens <= 8
    after = generated(served)
    assert after[1] - before[1] == response.usage.output_tokens


def test_openai_responses_stream_delta_by_delta_and_complete_with_usage(served: Served) -> None:
    before = generated(served)
    deltas: list[str] = []
    completed = None
    for event in served.openai().responses.create(
        model="smollm2", input=PROMPT, max_output_tokens=8, temperature=0, stream=True
    ):
        if event.type == "response.output_text.delta":
            deltas.append(event.delta)
        elif event.type == "response.completed":
            completed = event.response
    assert completed is not None and len(deltas) > 1
    assert "".join(deltas) == completed.output_text
    assert completed.usage is not None
    after = generated(served)
    assert after[1] - before[1] == completed.usage.output_tokens > 0


def test_versionless_and_get_routes_reach_llama_server(served: Served, smollm2_gguf: Path) -> None:
    # An OpenAI client whose base URL is `/v` posts to /v/chat/completions, which reaches
    # llama-server as /chat/completions (stripVersionPrefix, internal/server/server.go); GET /props
    # names its model in the query (modelGetRoutes) and is llama-server's own answer.
    versionless = openai.OpenAI(base_url=f"{served.url}/v", api_key="unused", timeout=120, max_retries=0)
    reply = versionless.chat.completions.create(
        model="claude-haiku", messages=[{"role": "user", "content": PROMPT}], max_tokens=4, temperature=0
    )
    assert reply.choices[0].message.content and reply.usage is not None
    props = httpx.get(served.url + "/props", params={"model": "smollm2"}, timeout=120)
    assert props.status_code == 200, props.text
    assert props.json()["model_path"] == str(smollm2_gguf)
    assert props.json()["default_generation_settings"]["n_ctx"] == 1024


def test_a_variant_reaches_llama_server_with_its_params_on_the_base_models_process(served: Served) -> None:
    client = served.openai()
    messages: list[openai.types.chat.ChatCompletionMessageParam] = [{"role": "user", "content": PROMPT}]
    base = client.chat.completions.create(model="smollm2", messages=messages, max_tokens=8, temperature=0)
    (server,) = children(served.process.pid)
    brief = client.chat.completions.create(model="smollm2:brief", messages=messages, temperature=0)
    assert children(served.process.pid) == [server]  # the same llama-server answered both
    assert base.choices[0].logprobs is None
    assert brief.usage is not None and brief.usage.completion_tokens <= 2
    assert brief.usage.completion_tokens < base.usage.completion_tokens  # type: ignore[union-attr]
    logprobs = brief.choices[0].logprobs
    assert logprobs is not None and logprobs.content
    assert all(len(token.top_logprobs) == 3 for token in logprobs.content)
    assert httpx.get(served.url + "/running", timeout=30).json()["running"][0]["model"] == "smollm2"
    quick = client.chat.completions.create(model="quick", messages=messages, temperature=0)
    assert quick.usage is not None and quick.usage.completion_tokens <= 2
    assert quick.choices[0].message.content == brief.choices[0].message.content


def test_a_peer_that_is_a_second_halogen_serve_answers_openai_and_ollama_clients(
    served: Served, tmp_path: Path
) -> None:
    near = tmp_path / "near.yaml"
    near.write_text(
        yaml.safe_dump(
            {
                "models": {
                    "idle": {
                        "cmd": f"{sys.executable} -c pass",
                        "proxy": "http://127.0.0.1:9",
                        "checkEndpoint": "none",
                    }
                },
                "peers": {"far": {"proxy": served.url, "models": ["smollm2"], "timeouts": {"connect": 2}}},
            }
        )
    )
    with halogen_serve(near, tmp_path / "near.log", "--no-watch") as serving:
        client = openai.OpenAI(base_url=f"{serving.url}/v1", api_key="unused", timeout=120, max_retries=0)
        for name in ("far/smollm2", "smollm2"):
            answer = client.chat.completions.create(
                model=name, messages=[{"role": "user", "content": PROMPT}], max_tokens=4, temperature=0
            )
            assert answer.choices[0].message.content
        listed = {m.model for m in ollama.Client(host=serving.url, timeout=120).list().models}
        assert "far/smollm2:latest" in listed
        # What `ollama run` asks first.
        shown = ollama.Client(host=serving.url, timeout=120).show("far/smollm2")
        assert shown.capabilities == ["completion"] and "peer far" in (shown.modelfile or "")
        said = ollama.Client(host=serving.url, timeout=120).chat(
            "far/smollm2", messages=[{"role": "user", "content": PROMPT}], options={"num_predict": 4}
        )
        assert said.message.content and said.done
