"""`halogen smoke` against endpoints that refuse, hang, lie or name their models hostilely,
and given bad arguments: a clear message and an exit code each, no traceback, no hang."""

from __future__ import annotations

import asyncio
import json
import os
import pty
import socket
import subprocess
import time

import junitparser
import pytest
from aiohttp import web

from tests.ports import free_ports

from .endpoint import Endpoint, endpoint
from .run import HALOGEN, PATIENCE, environment, smoke


async def test_connection_refused_names_the_url_and_exits_1() -> None:
    (port,) = free_ports(1)
    url = f"http://127.0.0.1:{port}"
    ran = await smoke(url)
    assert ran.code == 1
    assert ran.out == ""
    assert (
        f"halogen: error: cannot list the models: cannot connect to {url}/v1/models: Connection refused"
        in ran.err
    )
    ran = await smoke(url, "--format", "json")
    assert ran.code == 1 and json.loads(ran.out)["passed"] is False
    assert "Connection refused" in json.loads(ran.out)["error"]


async def test_https_to_a_plain_http_server_says_tls_failed() -> None:
    async with endpoint() as server:
        url = server.url.replace("http://", "https://")
        ran = await smoke(url)
    assert ran.code == 1
    assert f"cannot connect to {url}/v1/models: TLS failed: " in ran.err


async def test_a_server_that_never_answers_times_out_and_exits_1() -> None:
    with socket.socket() as silent:  # accepted by the kernel, never read nor answered
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        started = time.monotonic()
        ran = await smoke(url, "--timeout", "1")
    assert ran.code == 1
    assert f"no answer from {url}/v1/models within 1 s (--timeout)" in ran.err
    assert time.monotonic() - started < PATIENCE


async def test_a_stream_that_stalls_fails_its_check_and_skips_the_models_other_checks() -> None:
    async def stalls(request: web.Request) -> web.StreamResponse:
        if not (await request.json()).get("stream"):
            return web.json_response({"choices": [{"message": {"content": "ok"}}]})
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await response.write(b'data: {"choices": [{"delta": {"content": "one"}}]}\n\n')
        await asyncio.sleep(PATIENCE)
        return response

    models = [{"id": "stuck"}, {"id": "fine", "ollama": ["embedding"]}]
    async with endpoint(Endpoint(models=models, overrides={"/v1/chat/completions": stalls})) as server:
        ran = await smoke(server.url, "--timeout", "1", "--format", "json")
    assert ran.code == 1
    rows = {m["id"]: m for m in json.loads(ran.out)["models"]}
    checks = {c["name"]: c for c in rows["stuck"]["checks"]}
    assert checks["openai-chat"]["passed"] is True
    assert checks["openai-chat-stream"]["error"] == (
        f"no answer from {server.url}/v1/chat/completions within 1 s (--timeout)"
    )
    assert checks["ollama-chat"]["skipped"] and checks["ollama-chat"]["error"] == (
        "not run: openai-chat-stream timed out"
    )
    assert rows["fine"]["passed"] is True


@pytest.mark.parametrize(
    ("answer", "said"),
    [
        (b"NOT HTTP AT ALL\r\n\r\n", "Bad status line"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 99999\r\n\r\n{", "Response payload is not completed"),
        (b"HTTP/1.1 200 OK\r\nX-Long: " + b"a" * 100_000 + b"\r\n\r\n", "Got more than 8190 bytes"),
    ],
)
async def test_an_answer_that_is_not_http_exits_1_saying_what_was_wrong(answer: bytes, said: str) -> None:
    async def reply(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(answer)
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(reply, "127.0.0.1", 0)
    url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    try:
        ran = await smoke(url)
    finally:
        server.close()
    assert ran.code == 1
    assert f"halogen: error: cannot list the models: {url}/v1/models: " in ran.err and said in ran.err
    assert len(ran.err) < 600


async def test_a_model_list_that_is_not_json_or_not_a_list_exits_1_saying_so() -> None:
    async def html(request: web.Request) -> web.Response:
        return web.Response(text="<html><body>Welcome to nginx!</body></html>", content_type="text/html")

    async def other(request: web.Request) -> web.Response:
        return web.json_response({"models": ["a"]})

    async with endpoint(Endpoint(overrides={"/v1/models": html})) as server:
        ran = await smoke(server.url)
        assert ran.code == 1
        assert f"{server.url}/v1/models answered 200 but not JSON: <html><body>Welcome to nginx!" in ran.err
        server.overrides["/v1/models"] = other
        ran = await smoke(server.url, "--format", "junit")
    assert ran.code == 1
    assert "did not answer with a model list" in ran.err
    (suite,) = junitparser.JUnitXml.fromstring(ran.out)
    assert suite.name == "endpoint" and suite.failures == 1


async def test_json_nested_past_the_parsers_depth_is_not_json() -> None:
    async def deep(request: web.Request) -> web.Response:
        return web.Response(text="[" * 100_000 + "]" * 100_000, content_type="application/json")

    async with endpoint(Endpoint(overrides={"/v1/models": deep})) as server:
        ran = await smoke(server.url)
    assert ran.code == 1 and "answered 200 but not JSON: [[[[" in ran.err


async def test_odd_entries_and_an_overlong_stream_line_fail_the_check_not_the_run() -> None:
    async def long_line(request: web.Request) -> web.StreamResponse:
        if not (await request.json()).get("stream"):
            return web.json_response({"choices": [{"message": {"content": "ok"}}]})
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await response.write(b"data: " + b"x" * 4_000_000 + b"\n\n")
        return response

    models = [{"id": "m", "meta": {"llamaswap": {"type": []}}, "capabilities": ["reranker"]}]
    async with endpoint(Endpoint(models=models, overrides={"/v1/chat/completions": long_line})) as server:
        ran = await smoke(server.url, "--format", "json")
    assert ran.code == 1
    (row,) = json.loads(ran.out)["models"]
    checks = {c["name"]: c for c in row["checks"]}
    assert row["kind"] == "chat" and checks["openai-chat"]["passed"]
    assert checks["openai-chat-stream"]["error"] == "a line of the stream is too long"


async def test_an_empty_model_list_fails() -> None:
    async with endpoint(Endpoint(models=[])) as server:
        ran = await smoke(server.url)
    assert ran.code == 1 and "lists no model to test" in ran.err


HOSTILE = "evil\n\x1b[31mred\x1b[0m\u202etxt.exe\r\x07"


async def test_a_hostile_model_id_is_escaped_in_the_table_and_the_junit_and_kept_in_json() -> None:
    async def fails(request: web.Request) -> web.Response:
        return web.json_response({"error": {"message": "no \x1b[2J model \x1b]0;pwned\x07"}}, status=404)

    overrides = {"/v1/chat/completions": fails, "/api/chat": fails}
    async with endpoint(Endpoint(models=[{"id": HOSTILE}], overrides=overrides)) as server:
        table = await smoke(server.url)
        as_json = await smoke(server.url, "--format", "json")
        as_junit = await smoke(server.url, "--format", "junit")
    for ran in (table, as_json, as_junit):
        assert ran.code == 1
        assert not any(c in ran.both for c in "\x1b\x07\r\u202e"), repr(ran.both)
    escaped = "evil\\x0a\\x1b[31mred\\x1b[0m\\u202etxt.exe\\x0d\\x07"
    assert escaped in table.out
    assert (
        f"{escaped}: openai-chat, openai-chat-stream, ollama-chat, ollama-chat-stream: HTTP 404: no \\x1b[2J model"
        in table.out
    )
    assert json.loads(as_json.out)["models"][0]["id"] == HOSTILE
    (suite,) = junitparser.JUnitXml.fromstring(as_junit.out)
    assert suite.name == escaped and suite.failures == 4


@pytest.mark.parametrize(
    ("url", "said"),
    [
        ("127.0.0.1:8080", "is not an http(s) URL of a server"),
        ("ftp://127.0.0.1:8080", "is not an http(s) URL of a server"),
        ("http://", "is not an http(s) URL of a server"),
        ("http://127.0.0.1:99999", "Port out of range"),
        ("http://user:secret@127.0.0.1:8080", "put no credentials in the URL"),
        ("http://127.0.0.1:8080/v1", "without /v1"),
        ("http://127.0.0.1:8080/?x=1", "takes no query"),
        ("http://127.0.0.1:8080/\n", "no spaces or control characters"),
    ],
)
def test_a_bad_url_is_a_usage_error(url: str, said: str) -> None:
    ran = subprocess.run(
        [str(HALOGEN), "smoke", url], capture_output=True, text=True, timeout=PATIENCE, env=environment()
    )
    assert ran.returncode == 2, ran.stderr
    assert "Invalid value for URL" in ran.stderr and said in ran.stderr
    assert "Traceback" not in ran.stderr and "secret" not in ran.stderr


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["--config-version", "abc123"], "is not a sha256 in hex"),
        (["--timeout", "0"], "--timeout"),
        (["--concurrency", "0"], "--concurrency"),
        (["--format", "xml"], "--format"),
        (["--output", "/nonexistent/folder/report.xml"], "/nonexistent/folder is not a folder"),
    ],
)
def test_bad_options_are_usage_errors(args: list[str], said: str) -> None:
    ran = subprocess.run(
        [str(HALOGEN), "smoke", "http://127.0.0.1:9", *args],
        capture_output=True,
        text=True,
        timeout=PATIENCE,
        env=environment(),
    )
    assert ran.returncode == 2 and said in ran.stderr and "Traceback" not in ran.stderr


def test_a_key_with_a_newline_is_a_usage_error_that_does_not_print_it() -> None:
    ran = subprocess.run(
        [str(HALOGEN), "smoke", "http://127.0.0.1:9"],
        capture_output=True,
        text=True,
        timeout=PATIENCE,
        env=environment(HALOGEN_API_KEY="sk-secret\nX-Injected: 1"),
    )
    assert ran.returncode == 2 and "control character" in ran.stderr
    assert "sk-secret" not in ran.stderr + ran.stdout


async def test_the_progress_bar_is_drawn_on_a_terminal_and_never_into_a_pipe() -> None:
    async with endpoint(Endpoint(models=[{"id": "a"}, {"id": "b"}])) as server:
        piped = await smoke(server.url)
        leader, follower = pty.openpty()
        try:
            process = await asyncio.create_subprocess_exec(
                str(HALOGEN),
                "smoke",
                server.url,
                stdout=asyncio.subprocess.PIPE,
                stderr=follower,
                env=environment(),
            )
            os.close(follower)
            out, _ = await asyncio.wait_for(process.communicate(), PATIENCE)
            drawn = b""
            while True:
                try:
                    chunk = os.read(leader, 65536)
                except OSError:  # EIO: the terminal's other end is closed
                    break
                if not chunk:
                    break
                drawn += chunk
        finally:
            os.close(leader)
    assert piped.code == 0 and piped.err == ""
    assert "MODEL" in piped.out and "\x1b" not in piped.out and "models" not in piped.out.split("\n")[0]
    assert process.returncode == 0
    assert b"] 1/2 models" in drawn and b"] 2/2 models" in drawn and b"a: openai-chat" in drawn
    assert drawn.endswith(b"\r\x1b[2K")  # the bar is wiped: the table stands alone
    assert b"\x1b" not in out
