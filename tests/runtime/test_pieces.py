"""The pure pieces of the runtime: rewrites, headers, forms, paths, keys, counts."""

from __future__ import annotations

import itertools
import json

import pytest
from aiohttp import web
from hypothesis import given
from hypothesis import strategies as st
from multidict import CIMultiDict
from prometheus_client import generate_latest

from halogen.llamaswap.resolved import Runnable
from halogen.runtime.apis.management import split_upstream_path
from halogen.runtime.apis.ollama import routes as ollama_routes
from halogen.runtime.base.errors import BadRequest, UnknownModel
from halogen.runtime.base.metrics import Metrics, TokenReader, token_counts
from halogen.runtime.forward import multipart, proxy
from halogen.runtime.process.lines import LineSplitter
from halogen.runtime.process.upstream import Upstream
from halogen.runtime.serve import auth
from halogen.runtime.serve.listen import parse_listen


def runnable(**fields: object) -> Runnable:
    base: dict[str, object] = {
        "id": "m",
        "argv": ("srv",),
        "stop_argv": (),
        "proxy": "http://127.0.0.1:1",
        "check_endpoint": "/health",
        "env": (),
        "group": "(default)",
    }
    return Runnable(**{**base, **fields})  # type: ignore[arg-type]


def test_a_body_without_rewrites_goes_upstream_as_the_client_sent_it() -> None:
    assert proxy.rewrite(runnable(), {"model": "m", "x": 1}) is None


def test_a_forced_param_equal_to_the_clients_changes_nothing() -> None:
    assert proxy.rewrite(runnable(set_params={"x": 1}), {"model": "m", "x": 1}) is None


def test_rewrites_apply_use_model_name_then_strip_then_set() -> None:
    r = runnable(use_model_name="real", strip_params=("a", "b"), set_params={"b": 2, "c": 3})
    assert proxy.rewrite(r, {"model": "alias", "a": 1, "b": 1, "d": 4}) == {
        "model": "real",
        "d": 4,
        "b": 2,
        "c": 3,
    }


def test_hop_by_hop_headers_and_those_named_by_connection_are_not_forwarded() -> None:
    headers = CIMultiDict(
        [
            ("Connection", "keep-alive, X-Secret-Hop"),
            ("X-Secret-Hop", "1"),
            ("Keep-Alive", "timeout=5"),
            ("Transfer-Encoding", "chunked"),
            ("Host", "proxy"),
            ("Content-Length", "3"),
            ("Authorization", "Bearer k"),
            ("X-Api-Key", "k"),
            ("Accept", "text/event-stream"),
            ("X-Keep", "a"),
            ("X-Keep", "b"),
        ]
    )
    kept = proxy.request_headers(headers, drop_credentials=True)
    assert list(kept.items()) == [("Accept", "text/event-stream"), ("X-Keep", "a"), ("X-Keep", "b")]
    with_keys = proxy.request_headers(headers, drop_credentials=False)
    assert with_keys["Authorization"] == "Bearer k"
    out = proxy.response_headers(
        CIMultiDict([("Transfer-Encoding", "chunked"), ("Content-Type", "text/event-stream")])
    )
    assert list(out) == ["Content-Type"]


FORM = (
    b"preamble\r\n"
    b"--XyZ\r\n"
    b'Content-Disposition: form-data; name="file"; filename="name=\\"model\\".wav"\r\n'
    b"Content-Type: audio/wav\r\n\r\n"
    b"\x00\x01--XyZ is not a boundary here\r\n"
    b"--XyZ\r\n"
    b'Content-Disposition: form-data; name="model"\r\n\r\n'
    b"whisper\r\n"
    b"--XyZ--\r\n"
)


def test_the_model_form_field_is_read_and_replaced_leaving_other_bytes_alone() -> None:
    content_type = 'multipart/form-data; boundary="XyZ"'
    assert multipart.field(FORM, content_type, "model") == "whisper"
    assert multipart.field(FORM, content_type, "language") is None
    replaced = multipart.replace_field(FORM, content_type, "model", "large-v3")
    assert replaced == FORM.replace(b"\r\nwhisper\r\n", b"\r\nlarge-v3\r\n")
    assert multipart.field(FORM, "application/json", "model") is None


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("m/props", ("m", "/props")),
        ("m", ("m", "/")),
        ("m/", ("m", "/")),
        ("org/model/v1/models", ("org/model", "/v1/models")),
        ("org%2Fmodel/health", ("org/model", "/health")),
        ("alias/slots/0", ("m", "/slots/0")),
    ],
)
def test_upstream_paths_split_into_the_longest_model_name_and_a_plain_path(
    raw: str, expected: tuple[str, str]
) -> None:
    names = {"m": "m", "alias": "m", "org/model": "org/model"}
    assert split_upstream_path(raw, names.get) == expected


@pytest.mark.parametrize(
    "raw", ["m/../x", "m/%2E%2E/x", "m/./x", "m//host/x", "m/a%2fb", "m/a%5Cb", "m/http://host/"]
)
def test_upstream_paths_that_could_leave_the_models_server_are_refused(raw: str) -> None:
    with pytest.raises(BadRequest):
        split_upstream_path(raw, {"m": "m"}.get)


def test_an_upstream_path_for_an_unknown_model_names_it() -> None:
    with pytest.raises(UnknownModel, match="'nope'"):
        split_upstream_path("nope/x", {"m": "m"}.get)


@pytest.mark.parametrize(
    ("headers", "allowed"),
    [
        ({"Authorization": "Bearer k2"}, True),
        ({"Authorization": "bearer  k1 "}, True),
        ({"x-api-key": "k1"}, True),
        ({"Authorization": "Basic k1"}, False),
        ({"Authorization": "Bearer k"}, False),
        ({"x-api-key": ""}, False),
        ({}, False),
    ],
)
def test_api_keys_come_as_bearer_tokens_or_x_api_key(headers: dict[str, str], allowed: bool) -> None:
    assert auth.allowed(CIMultiDict(headers), ["k1", "k2"]) is allowed
    assert auth.allowed(CIMultiDict(headers), []) is True


def test_token_counts_prefer_usage_and_fall_back_to_llama_server_timings() -> None:
    assert token_counts(
        {"usage": {"prompt_tokens": 5, "completion_tokens": 2}, "timings": {"prompt_n": 1, "predicted_n": 9}}
    ) == (5, 2)
    assert token_counts({"timings": {"prompt_n": 3, "cache_n": 4, "predicted_n": 9}}) == (7, 9)
    assert token_counts({"usage": {"prompt_tokens": 5}}) == (5, 0)
    assert token_counts({"choices": []}) is None
    assert token_counts([1]) is None


def test_token_counts_read_anthropic_and_responses_usage() -> None:
    # Anthropic's answer, and the Responses API's answer and its response.completed event.
    assert token_counts({"type": "message", "usage": {"input_tokens": 12, "output_tokens": 4}}) == (12, 4)
    completed = {"type": "response.completed", "response": {"usage": {"input_tokens": 9, "output_tokens": 2}}}
    assert token_counts(completed) == (9, 2)
    start = {"type": "message_start", "message": {"usage": {"input_tokens": 20, "output_tokens": 1}}}
    assert token_counts(start) == (20, 1)


ANTHROPIC_SSE = (
    b"event: message_start\n"
    b'data: {"type":"message_start","message":{"id":"m","usage":{"input_tokens":20,"output_tokens":0}}}\n\n'
    b"event: content_block_delta\n"
    b'data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"hi"}}\n\n'
    b"event: message_delta\n"
    b'data: {"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"output_tokens":6}}\n\n'
    b"event: message_stop\n"
    b'data: {"type":"message_stop"}\n\n'
)


def test_an_anthropic_stream_counts_input_from_message_start_and_output_from_message_delta() -> None:
    reader = TokenReader(event_stream=True)
    for start in range(0, len(ANTHROPIC_SSE), 17):
        reader.feed(ANTHROPIC_SSE[start : start + 17])
    assert reader.close() == (20, 6)


SSE = (
    b'data: {"choices":[{"delta":{"content":"a"}}]}\n\n'
    b'data: {"choices":[],"usage":{"prompt_tokens":31,"completion_tokens":3},"timings":{"prompt_n":31}}\r\n\r\n'
    b"data: [DONE]\n\n"
)


@given(st.lists(st.integers(min_value=0, max_value=len(SSE)), max_size=12))
def test_sse_counts_survive_any_split_of_the_stream_into_reads(cuts: list[int]) -> None:
    reader = TokenReader(event_stream=True)
    points = [0, *sorted(cuts), len(SSE)]
    for start, end in itertools.pairwise(points):
        reader.feed(SSE[start:end])
    assert reader.close() == (31, 3)


def test_a_non_streamed_answer_is_parsed_once_complete() -> None:
    reader = TokenReader(event_stream=False)
    body = json.dumps({"usage": {"prompt_tokens": 2, "completion_tokens": 1}}).encode()
    reader.feed(body[:7])
    reader.feed(body[7:])
    assert reader.close() == (2, 1)


@given(st.lists(st.binary(max_size=20), max_size=10))
def test_lines_split_across_reads_come_out_whole(pieces: list[bytes]) -> None:
    splitter = LineSplitter()
    out: list[bytes] = []
    for piece in pieces:
        out += splitter.feed(piece)
    out += splitter.close()
    expected = [line.rstrip(b"\r") for line in b"".join(pieces).split(b"\n")]
    if expected and expected[-1] == b"":
        expected.pop()
    assert out == expected


def test_metrics_are_prometheus_text_with_escaped_labels_and_no_created_series() -> None:
    metrics = Metrics(["b", 'we"ird\\'])
    metrics.request("b", 200)
    metrics.request("b", 502)
    metrics.swap("b", 1.5)
    text = generate_latest(metrics).decode()
    assert 'halogen_requests_total{model="b"} 2.0' in text
    assert 'halogen_request_errors_total{model="b"} 1.0' in text
    assert 'halogen_load_seconds_total{model="b"} 1.5' in text
    assert 'halogen_requests_total{model="we\\"ird\\\\"} 0.0' in text
    assert 'halogen_model_load_seconds_bucket{le="2.0",model="b"} 1.0' in text
    assert "# TYPE halogen_requests_total counter" in text
    assert "_created" not in text
    # A histogram's series appear with the model's first observation only.
    assert 'halogen_model_load_seconds_count{model="we' not in text


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("127.0.0.1:8080", ("127.0.0.1", 8080)),
        (":9", ("127.0.0.1", 9)),
        ("8081", ("127.0.0.1", 8081)),
        ("[::1]:80", ("::1", 80)),
        ("0.0.0.0:8080", ("0.0.0.0", 8080)),
    ],
)
def test_listen_addresses_default_to_loopback(value: str, expected: tuple[str, int]) -> None:
    assert parse_listen(value) == expected


@pytest.mark.parametrize("value", ["host:http", "127.0.0.1:70000"])
def test_bad_listen_addresses_are_refused(value: str) -> None:
    with pytest.raises(ValueError, match="--listen"):
        parse_listen(value)


async def test_a_repeated_header_reaches_the_upstream_in_full_on_openai_and_ollama_routes() -> None:
    seen: list[list[tuple[str, str]]] = []

    async def record(request: web.Request) -> web.Response:
        seen.append([(k, v) for k, v in request.headers.items() if k.startswith("X-") or k == "Content-Type"])
        return web.Response(text="ok")

    application = web.Application()
    application.router.add_post("/x", record)
    runner = web.AppRunner(application)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    upstream = Upstream(runnable(proxy=f"http://127.0.0.1:{runner.addresses[0][1]}"), health_check_timeout=1)
    client = CIMultiDict(
        [("X-Trace", "a"), ("Content-Type", "text/plain"), ("X-Trace", "b"), ("Authorization", "Bearer k")]
    )
    try:
        for headers in (
            proxy.request_headers(client, drop_credentials=True),
            ollama_routes.upstream_headers(client, drop_credentials=True),
        ):
            answer = await proxy.open_upstream(upstream, "POST", "/x", headers=headers, body=b"{}")
            answer.release()
    finally:
        await upstream.stop()
        await runner.cleanup()
    openai, ollama = seen
    assert openai == [("X-Trace", "a"), ("Content-Type", "text/plain"), ("X-Trace", "b")]
    assert ollama == [("X-Trace", "a"), ("X-Trace", "b"), ("Content-Type", "application/json")]
