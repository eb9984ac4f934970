"""/metrics as Prometheus reads it: prometheus_client's text, halogen's histograms per model, and
the running llama-servers' own series merged in under a `model` label (fake upstreams here; the
real llama-server in test_metrics_real.py)."""

from __future__ import annotations

import asyncio
import json
import re
import time
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import make_mocked_request
from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.parser import text_string_to_metric_families

from halogen.runtime.apis import federation
from halogen.runtime.base.metrics import FIRST_TOKEN_BUCKETS
from halogen.runtime.forward.relay import OUTCOME, Outcome

from .harness import PATIENCE, Site, eventually, metric, sample, serving
from .test_peers import near_site, peer_fake
from .test_pieces import runnable

ROOT = Path(__file__).resolve().parents[2]


def families(text: str) -> dict[str, str]:
    """name -> type of every family in `text`; parsing it whole is the check that it is valid."""
    return {family.name: family.type for family in text_string_to_metric_families(text)}


def count(text: str, histogram: str, model: str) -> float | None:
    return sample(text, histogram + "_count", model=model)


async def test_a_streamed_chat_is_observed_once_in_each_histogram_of_its_model(tmp_path: Path) -> None:
    site = Site(tmp_path)
    site.fake("m", "--health-delay", "0.5")
    site.fake("idle")
    async with serving(site.write()) as proxy:
        async with await proxy.chat("m", stream=True, headers={"X-Fake-Chunks": "5"}) as response:
            assert response.status == 200
            await response.read()
        text = await proxy.metrics()
        assert families(text)["halogen_time_to_first_token_seconds"] == "histogram"
        for name in (
            "halogen_time_to_first_token_seconds",
            "halogen_generation_tokens_per_second",
            "halogen_queue_wait_seconds",
            "halogen_model_load_seconds",
        ):
            assert count(text, name, "m") == 1, name
            assert count(text, name, "idle") is None, name  # never asked for: no series
        # The first token came after the model's load (0.5 s), which it includes.
        first = sample(text, "halogen_time_to_first_token_seconds_sum", model="m")
        assert first is not None and first >= 0.5
        assert sample(text, "halogen_time_to_first_token_seconds_bucket", le="0.25", model="m") == 0
        assert sample(text, "halogen_time_to_first_token_seconds_bucket", le="+Inf", model="m") == 1
        # llama-server's predicted_per_second, as the fake computes it for 5 tokens in 2 ms.
        assert sample(text, "halogen_generation_tokens_per_second_sum", model="m") == 2000.0
        load = sample(text, "halogen_model_load_seconds_sum", model="m")
        assert load == float(metric(text, "halogen_load_seconds_total")["m"])
        # A whole answer has no first token to see, but its generation speed counts.
        async with await proxy.chat("m") as response:
            await response.read()
        text = await proxy.metrics()
        assert count(text, "halogen_time_to_first_token_seconds", "m") == 1
        assert count(text, "halogen_generation_tokens_per_second", "m") == 2
        assert count(text, "halogen_queue_wait_seconds", "m") == 2
        assert count(text, "halogen_model_load_seconds", "m") == 1


async def test_ollama_answers_are_observed_streamed_or_whole(tmp_path: Path) -> None:
    site = Site(tmp_path)
    site.fake("m")
    chat = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    async with serving(site.write()) as proxy:
        async with proxy.client.post("/api/chat", json={**chat, "stream": False}) as response:
            assert response.status == 200
        async with proxy.client.post("/api/chat", json=chat) as response:
            await response.read()  # a stream, Ollama's default
        text = await proxy.metrics()
    assert count(text, "halogen_time_to_first_token_seconds", "m") == 1
    assert count(text, "halogen_generation_tokens_per_second", "m") == 2
    assert sample(text, "halogen_generation_tokens_per_second_sum", model="m") == 800.0 + 1000.0


async def test_a_request_that_waits_for_a_busy_model_to_finish_is_observed_in_the_queue_wait(
    tmp_path: Path,
) -> None:
    site = Site(tmp_path)
    site.fake("a")
    site.fake("b")
    site.top["groups"] = {"one": {"swap": True, "exclusive": True, "members": ["a", "b"]}}
    gate = tmp_path / "gate"
    async with serving(site.write()) as proxy:
        busy = await proxy.chat("a", stream=True, headers={"X-Fake-Gate": str(gate)})
        waiting = asyncio.create_task(proxy.served_by("b"))
        await eventually(lambda: proxy.swapper.queued()["b"] == 1, "b waits for a")
        await asyncio.sleep(0.6)
        gate.touch()
        await busy.read()
        busy.release()
        assert await waiting == "b"
        text = await proxy.metrics()
    waited = sample(text, "halogen_queue_wait_seconds_sum", model="b")
    assert waited is not None and waited >= 0.6
    assert sample(text, "halogen_queue_wait_seconds_bucket", le="0.5", model="b") == 0
    assert sample(text, "halogen_queue_wait_seconds_bucket", le="1.0", model="b") == 1


def test_the_histogram_bounds_reach_minutes_for_a_cold_start() -> None:
    assert FIRST_TOKEN_BUCKETS[-1] >= 300 and list(FIRST_TOKEN_BUCKETS) == sorted(FIRST_TOKEN_BUCKETS)


async def test_metrics_are_served_with_the_libraries_content_type_and_no_created_series(
    tmp_path: Path,
) -> None:
    site = Site(tmp_path)
    site.fake("m")
    async with serving(site.write()) as proxy:
        await proxy.served_by("m")
        async with proxy.client.get("/metrics") as response:
            assert response.headers["Content-Type"] == CONTENT_TYPE_LATEST
            text = await response.text()
    assert "_created" not in text
    assert families(text)["halogen_requests"] == "counter"
    assert "# TYPE halogen_requests_total counter" in text


# --- the llama-servers' own /metrics ----------------------------------------------------------


async def test_a_running_llama_servers_metrics_appear_under_its_model_label(tmp_path: Path) -> None:
    site = Site(tmp_path)
    site.fake("on", "--metrics")
    idle = site.fake("idle", "--metrics")
    off = site.fake("off")  # started without --metrics: never asked
    site.top["groups"] = {"all": {"swap": False, "exclusive": False, "members": ["on", "idle", "off"]}}
    async with serving(site.write()) as proxy:
        for model in ("on", "on", "off"):
            await proxy.served_by(model)
        text = await proxy.metrics()
        assert families(text)["llamacpp:prompt_tokens"] == "counter"
        assert metric(text, "llamacpp:prompt_tokens_total") == {"on": "14"}
        assert metric(text, "llamacpp:requests_processing") == {"on": "0"}
        assert text.count("# TYPE llamacpp:prompt_tokens_total counter") == 1
    assert idle.starts() == 0  # a model not running contributes nothing
    assert off.events("metrics") == []


async def test_a_llama_server_with_an_api_key_is_asked_with_its_key(tmp_path: Path) -> None:
    site = Site(tmp_path)
    locked = site.fake("locked", "--metrics", "--api-key", "sk-model")
    async with serving(site.write()) as proxy:
        await proxy.served_by("locked")
        text = await proxy.metrics()
    assert locked.events("metrics")
    assert metric(text, "llamacpp:prompt_tokens_total") == {"locked": "7"}


async def test_a_hung_llama_server_leaves_out_its_series_without_stalling_the_scrape(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(federation, "TIMEOUT", 0.5)
    site = Site(tmp_path)
    hung = site.fake("hung", "--metrics", "--metrics-hang")
    site.fake("fine", "--metrics")
    site.top["groups"] = {"all": {"swap": False, "exclusive": False, "members": ["hung", "fine"]}}
    async with serving(site.write()) as proxy:
        await proxy.served_by("hung")
        await proxy.served_by("fine")
        began = time.monotonic()
        text = await asyncio.wait_for(proxy.metrics(), PATIENCE)
        # A bound on the wait, well past the timeout, not a measure of speed.
        assert time.monotonic() - began < 10
        assert hung.events("metrics")
        assert metric(text, "llamacpp:prompt_tokens_total") == {"fine": "7"}
        assert metric(text, "halogen_requests_total") == {"fine": "1", "hung": "1"}
        # The hung model still serves.
        assert await proxy.served_by("hung") == "hung"


HOSTILE = {
    "garbage": b'\x00\xff{{{ not prometheus\n# TYPE x counter\nx{a="1" 2\n',
    "injection": (
        b"# HELP halogen_requests_total fake\n"
        b"# TYPE halogen_requests_total counter\n"
        b'halogen_requests_total{model="fine"} 1e9\n'
        b"# HELP evil_total A\\nnewline in help\n"
        b"# TYPE evil_total counter\n"
        b'evil_total{model="fine",note="quote \\" and \\n newline } {"} 5\n'
        b'evil_total{model="fine",note="quote \\" and \\n newline } {"} 6\n'
    ),
}


@pytest.mark.parametrize("kind", ["garbage", "huge", "injection"])
async def test_hostile_text_from_a_llama_server_cannot_break_the_metrics(tmp_path: Path, kind: str) -> None:
    source = tmp_path / "metrics.txt"
    if kind == "huge":
        line = b"big_total 1\n"
        source.write_bytes(b"# TYPE big_total counter\n" + line * (federation.MAX_BYTES // len(line) + 10))
    else:
        source.write_bytes(HOSTILE[kind])
    site = Site(tmp_path)
    site.fake("bad", "--metrics", "--metrics-text", str(source))
    site.fake("fine", "--metrics")
    site.top["groups"] = {"all": {"swap": False, "exclusive": False, "members": ["bad", "fine"]}}
    async with serving(site.write()) as proxy:
        await proxy.served_by("bad")
        await proxy.served_by("fine")
        text = await proxy.metrics()
    found = families(text)  # the whole output still parses
    assert metric(text, "llamacpp:prompt_tokens_total") == {"fine": "7"}
    assert metric(text, "halogen_requests_total") == {"bad": "1", "fine": "1"}
    assert text.count("# TYPE halogen_requests_total counter") == 1
    if kind == "injection":
        rows = [s for f in text_string_to_metric_families(text) for s in f.samples if s.name == "evil_total"]
        assert [(r.labels, r.value) for r in rows] == [
            (
                {
                    "exported_model": "fine",
                    "model": "bad",
                    "note": 'quote " and \n newline } {',
                },
                5.0,
            )
        ]
        assert found["evil"] == "counter"
    else:
        assert not [name for name in found if re.match(r"(x|big)$", name)]


def test_merge_keeps_one_family_per_name_and_the_first_type_across_models() -> None:
    texts = {
        "a": "# TYPE shared gauge\nshared 1\n# TYPE shared_total gauge\nshared_total 3\n",
        "b": "# TYPE shared counter\nshared_total 2\n# TYPE shared gauge\nshared 4\n",
    }
    merged = federation.merge(texts)
    rows = [(f.name, f.type, s.name, s.labels["model"], s.value) for f in merged for s in f.samples]
    # b's counter `shared` is typed otherwise than a's gauge; its gauge joins a's family.
    assert rows == [
        ("shared", "gauge", "shared", "a", 1.0),
        ("shared", "gauge", "shared", "b", 4.0),
        ("shared_total", "gauge", "shared_total", "a", 3.0),
    ]


def test_merge_stops_at_the_sample_limit_per_model() -> None:
    text = "# TYPE g gauge\n" + "".join(f'g{{i="{i}"}} 1\n' for i in range(federation.MAX_SAMPLES + 5))
    (family,) = federation.merge({"m": text})
    assert len(family.samples) == federation.MAX_SAMPLES


async def test_every_metric_the_readmes_promql_names_is_one_metrics_writes(tmp_path: Path) -> None:
    readme = (ROOT / "README.md").read_text()
    block = readme.split("<!-- promql: begin -->", 1)[1].split("<!-- promql: end -->", 1)[0]
    queries = [line for line in block.splitlines() if line and not line.startswith(("#", "```"))]
    names = {name for query in queries for name in re.findall(r"\b(?:halogen_|llamacpp:)[a-z_:]+", query)}
    assert len(names) >= 6, names
    site = Site(tmp_path)
    site.fake("m", "--metrics")
    async with serving(site.write()) as proxy:
        async with await proxy.chat("m", stream=True) as response:
            await response.read()
        text = await proxy.metrics()
    written = {s.name for family in text_string_to_metric_families(text) for s in family.samples}
    assert names <= written, names - written


async def test_a_peers_streamed_answer_is_observed_under_the_peers_model_and_never_queues(
    tmp_path: Path,
) -> None:
    async with peer_fake(tmp_path, "qwen") as (_, url):
        near = near_site(tmp_path, url, ["qwen"])
        async with serving(near.write()) as proxy:
            async with await proxy.chat("box2/qwen", stream=True, headers={"X-Fake-Chunks": "3"}) as response:
                assert response.status == 200
                await response.read()
            text = await proxy.metrics()
    assert metric(text, "halogen_requests_total") == {"box2/qwen": "1"}
    assert count(text, "halogen_time_to_first_token_seconds", "box2/qwen") == 1
    assert sample(text, "halogen_generation_tokens_per_second_sum", model="box2/qwen") == 1000.0
    assert count(text, "halogen_queue_wait_seconds", "box2/qwen") is None


@pytest.mark.parametrize(
    ("argv", "env", "asked"),
    [
        (("llama-server", "-m", "x.gguf", "--metrics"), (), True),
        (("llama-server", "-m", "x.gguf"), (("LLAMA_ARG_ENDPOINT_METRICS", "1"),), True),
        (("llama-server", "-m", "x.gguf"), (("LLAMA_ARG_ENDPOINT_METRICS", "false"),), False),
        (("llama-server", "-m", "x.gguf"), (), False),
    ],
)
def test_a_model_is_asked_for_its_metrics_when_its_command_turns_them_on(
    argv: tuple[str, ...], env: tuple[tuple[str, str], ...], asked: bool
) -> None:
    # common/arg.cpp: --metrics, or its variable LLAMA_ARG_ENDPOINT_METRICS.
    assert federation.scraped(runnable(argv=argv, env=env)) is asked


async def test_a_client_that_closes_as_the_answer_ends_is_counted_as_answered(tmp_path: Path) -> None:
    """A client that has read a whole stream may close at once (the official openai client does,
    at `data: [DONE]`), while the proxy still waits for the target's body to end: the handler is
    then cancelled, and the request must still count as the 200 it was, not as a client gone
    mid-answer (499). The relay marks the outcome delivered once the stream's last event is
    written (forward/relay.py)."""
    site = Site(tmp_path)
    site.fake("m")
    async with serving(site.write()) as proxy:
        runtime = proxy.server.runtime
        # aiohttp cancels the handler of a client that left, or the next write to it fails.
        for gone in (asyncio.CancelledError, ConnectionResetError):
            for delivered in (True, False):
                request = make_mocked_request("POST", "/v1/chat/completions", headers={"Host": "127.0.0.1"})
                request[OUTCOME] = Outcome(
                    200, tokens=(7, 3), first_event_ns=time.monotonic_ns(), delivered=delivered
                )
                with pytest.raises(gone), runtime.counted(request, "m"):
                    raise gone
        text = await proxy.metrics()
        rows = (await (await proxy.client.get("/api/metrics/activity")).json())["data"]
    assert metric(text, "halogen_requests_total") == {"m": "4"}
    assert metric(text, "halogen_request_errors_total") == {"m": "2"}  # the ones cut short
    # Each had its first token and carried its tokens, cut short or not.
    assert count(text, "halogen_time_to_first_token_seconds", "m") == 4
    assert metric(text, "halogen_generated_tokens_total") == {"m": "12"}
    assert sorted(row["resp_status_code"] for row in rows) == [200, 200, 499, 499]


async def test_a_client_that_leaves_at_done_before_the_body_ends_is_an_answered_request(
    tmp_path: Path,
) -> None:
    """The official openai client closes its connection at `data: [DONE]`; llama-server may end
    its body a moment later. The request is the 200 it was, in /metrics and the activity log."""
    site = Site(tmp_path)
    site.fake("m")
    async with serving(site.write()) as proxy:
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy.server.port)
        body = json.dumps({"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": True})
        writer.write(
            f"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"X-Fake-Done-Linger: 2\r\nContent-Length: {len(body)}\r\n\r\n{body}".encode()
        )
        answer = b""
        async with asyncio.timeout(PATIENCE):
            while b"data: [DONE]" not in answer:
                chunk = await reader.read(65536)
                assert chunk, answer
                answer += chunk
        writer.transport.abort()  # gone, while the target's body is still open
        await eventually(lambda: metric_now(proxy), "the request is counted")
        rows = (await (await proxy.client.get("/api/metrics/activity")).json())["data"]
        text = await proxy.metrics()
    assert [(row["resp_status_code"], row.get("error_msg", "")) for row in rows] == [(200, "")]
    assert metric(text, "halogen_request_errors_total") in ({}, {"m": "0"})
    assert count(text, "halogen_time_to_first_token_seconds", "m") == 1


async def metric_now(proxy: Any) -> bool:
    return metric(await proxy.metrics(), "halogen_requests_total") == {"m": "1"}
