"""/metrics through `halogen serve` with a real llama-server and SmolLM2: after one streamed
chat, the output parses, each of halogen's histograms holds one observation for the model, and
llama-server's own series (it runs with --metrics) appear under `model="<id>"`."""

from __future__ import annotations

from pathlib import Path

import httpx
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from .harness import PATIENCE, free_port_run, metric, sample, until
from .processes import serving_config

pytestmark = pytest.mark.real


def test_a_chat_is_observed_in_each_histogram_and_llama_servers_own_series_carry_the_model(
    tmp_path: Path, llama_server: Path, smollm2_gguf: Path
) -> None:
    cmd = f"{llama_server} --port ${{PORT}} --host 127.0.0.1 -m {smollm2_gguf} -c 512 -t 1 -ngl 0 --metrics"
    config = {"startPort": free_port_run(1), "healthCheckTimeout": 60, "models": {"smol": {"cmd": cmd}}}
    with serving_config(tmp_path, config) as serving:
        client = openai.OpenAI(base_url=serving.url + "/v1", api_key="unused", timeout=PATIENCE * 4)
        stream = client.chat.completions.create(
            model="smol", messages=[{"role": "user", "content": "Say hello."}], max_tokens=8, stream=True
        )
        assert "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)

        def scraped() -> str:
            return httpx.get(serving.url + "/metrics", timeout=PATIENCE).text

        # A request is counted once its handler is done, which may be just after the client
        # read the stream's last event.
        until(lambda: metric(scraped(), "halogen_requests_total") == {"smol": "1"}, "the chat is counted")
        text = scraped()
        # How the request ended, as the activity log has it: named when an assertion fails.
        ended = [
            (row["resp_status_code"], row.get("error_msg", ""))
            for row in httpx.get(serving.url + "/api/metrics/activity", timeout=PATIENCE).json()["data"]
        ]
    # The openai client closes the connection at `data: [DONE]`, which may be before the proxy
    # has read the end of llama-server's body: still an answered request.
    assert ended == [(200, "")], ended
    families = {family.name: family for family in text_string_to_metric_families(text)}
    for name in (
        "halogen_time_to_first_token_seconds",
        "halogen_generation_tokens_per_second",
        "halogen_queue_wait_seconds",
        "halogen_model_load_seconds",
    ):
        assert families[name].type == "histogram"
        assert sample(text, name + "_count", model="smol") == 1, name
    rate = sample(text, "halogen_generation_tokens_per_second_sum", model="smol")
    assert rate is not None and rate > 0
    # llama-server's own counters (tools/server/server-task.cpp), under the model's id.
    assert families["llamacpp:prompt_tokens"].type == "counter"
    assert float(metric(text, "llamacpp:prompt_tokens_total")["smol"]) > 0
    assert float(metric(text, "llamacpp:tokens_predicted_total")["smol"]) > 0
