"""`halogen serve` under hostile input: a config value that fails validation is never dropped,
secrets from the environment are never shown, what a client sends is bounded before it is
logged or echoed, slow clients are cut off, browsers on other sites are refused, and deep JSON
is a 400."""

from __future__ import annotations

import asyncio
import io as io_module
import json
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import openai
import pytest
import yaml

from halogen.diagnostics import Invalid
from halogen.llamaswap import io
from halogen.llamaswap.resolved import Runnable
from halogen.runtime.base.logs import Logs
from halogen.runtime.serve.listen import Limits
from halogen.runtime.serve.reload import Watcher

from .harness import PATIENCE, Site, free_port_run, free_ports, serving
from .processes import ROOT, halogen_serve, runtime, stop_serving, wait_healthy

# --- invalid top-level values ------------------------------------------------------------

BAD_TOP_VALUES = [
    ("apiKeys", "sk-abc"),
    ("apiKeys", ["sk-abc", 12345]),
    ("apiKeys", {"main": "sk-abc"}),
    ("apiKeys", ["sk-abc", None]),
    ("groups", ["a"]),
    ("startPort", "eighty"),
    ("logLevel", "loud"),
    ("hooks", {"on_startup": {"preload": "m"}}),
    ("unloadTimeout", -1),
    ("globalTTL", "forever"),
    ("healthCheckTimeout", "sixty"),
]


@pytest.mark.parametrize(("key", "value"), BAD_TOP_VALUES, ids=[f"{k}={v!r}" for k, v in BAD_TOP_VALUES])
def test_an_invalid_top_level_value_refuses_the_config_with_its_position(
    tmp_path: Path, key: str, value: object
) -> None:
    site = Site(tmp_path)
    site.fake("m")
    site.top[key] = value
    path = site.write()
    with pytest.raises(Invalid) as caught:
        io.load(path)
    lines = path.read_text().splitlines()
    first = 1 + next(i for i, text in enumerate(lines) if text.startswith(f"{key}:"))
    found = [d for d in caught.value.diagnostics if d.field.startswith(key)]
    assert found, caught.value
    # On the key's own line or inside its block, never the unpositioned top of the file.
    assert all(d.line >= first for d in found), found


def test_serve_exits_1_naming_the_bad_api_keys_line_instead_of_serving_without_keys(tmp_path: Path) -> None:
    site = Site(tmp_path)
    site.fake("m")
    site.top["apiKeys"] = "sk-abc"
    path = site.write()
    done = runtime(path, "--listen", "127.0.0.1:0", "--no-watch")
    assert done.returncode == 1, done.stdout + done.stderr
    line = 1 + path.read_text().splitlines().index("apiKeys: sk-abc")
    assert f"{path}:{line}:" in done.stderr and "apiKeys" in done.stderr
    assert "Traceback" not in done.stderr


async def test_a_reload_with_a_bad_api_keys_keeps_the_running_keys(tmp_path: Path) -> None:
    site = Site(tmp_path)
    site.fake("m")
    site.top["apiKeys"] = ["sk-good"]
    path = site.write()
    async with serving(path) as proxy:
        logs = Logs(echo_proxy=False)
        watcher = Watcher(path, proxy.swapper, logs)
        for bad in ("sk-abc", ["sk-abc", None], {"main": "sk-abc"}):
            site.top["apiKeys"] = bad
            site.write()
            assert await watcher.check() is False
            async with proxy.client.get("/running") as response:
                assert response.status == 401
            async with proxy.client.get("/running", headers={"x-api-key": "sk-good"}) as response:
                assert response.status == 200
        assert any("keeping the running config" in line for line in logs.history())
        assert any("apiKeys" in line for line in logs.history())


# --- deep JSON -----------------------------------------------------------------------------

DEEP_ROUTES = ["/v1/chat/completions", "/api/chat", "/api/show", "/api/embed", "/api/generate"]


@pytest.mark.parametrize("depth", [2000, 900, 300])
async def test_json_nested_too_deep_is_a_400_in_the_route_s_error_shape(tmp_path: Path, depth: int) -> None:
    site = Site(tmp_path)
    fake = site.fake("m")
    async with serving(site.write()) as proxy:
        body = '{"model": "m", "messages": ' + "[" * depth + "]" * depth + "}"
        for path in DEEP_ROUTES:
            async with proxy.client.post(
                path, data=body, headers={"Content-Type": "application/json"}
            ) as response:
                assert response.status == 400, (path, await response.text())
                error = (await response.json())["error"]
                message = error if path.startswith("/api/") else error["message"]
                assert "nests deeper" in message, (path, error)
        assert fake.starts() == 0
        # A body with many brackets side by side is not deep.
        wide = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "x": [[1]] * 1000}
        async with proxy.client.post("/v1/chat/completions", json=wide) as response:
            assert response.status == 200


# --- upstream connection reuse --------------------------------------------------------------


async def test_a_pooled_connection_the_upstream_closed_is_retried_once_on_a_new_one(tmp_path: Path) -> None:
    site = Site(tmp_path)
    fake = site.fake("m", "--drop-reused")
    async with serving(site.write()) as proxy:
        # The readiness polls leave a pooled connection behind; every request reuses one first.
        for _ in range(3):
            assert await proxy.served_by("m") == "m"
        async with proxy.client.post(
            "/api/chat", json={"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": False}
        ) as response:
            assert response.status == 200, await response.text()
        dropped = fake.events("dropped")
        assert dropped, "no request went out on a reused connection: the test proves nothing"
        # Each dropped request was sent again, and answered, exactly once.
        assert len(fake.events("request")) == 4


async def test_a_pooled_connection_idle_past_the_keepalive_is_not_reused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from halogen.runtime.process import pool

    monkeypatch.setattr(pool, "UPSTREAM_KEEPALIVE", 0.2)
    site = Site(tmp_path)
    fake = site.fake("m", "--drop-reused")
    async with serving(site.write()) as proxy:
        assert await proxy.served_by("m") == "m"  # started (its first request may be retried)
        before = len(fake.events("dropped"))
        for _ in range(3):
            await asyncio.sleep(0.5)  # longer than the pool keeps a connection
            assert await proxy.served_by("m") == "m"
        assert len(fake.events("dropped")) == before


# --- what a client sends, logged and echoed ------------------------------------------------

HUGE_NAME = "x" * (4 * 1024 * 1024)


async def test_a_huge_unknown_model_name_is_echoed_and_logged_cut_short(tmp_path: Path) -> None:
    site = Site(tmp_path)
    site.fake("m")
    async with serving(site.write(), logs=Logs(echo_proxy=False)) as proxy:
        for path in ("/v1/chat/completions", "/api/chat"):
            for _ in range(5):
                async with proxy.client.post(path, json={"model": HUGE_NAME, "messages": []}) as response:
                    assert response.status == 404
                    body = await response.read()
                    assert len(body) < 1024, len(body)
                    assert b"xxxxxxxx" in body and b"more characters" in body
        async with proxy.client.get("/logs") as response:
            text = await response.text()
        assert "more characters" in text
        assert len(text) < 64 * 1024, len(text)


def test_the_log_history_is_bounded_in_characters_whatever_its_lines_hold() -> None:
    history = Logs(echo_proxy=False)
    for i in range(3000):
        history.upstream("m", f"{i} " + "y" * 100_000)
    kept = history.history()
    assert sum(map(len, kept)) <= 4 * 1024 * 1024  # not 2000 lines of 100 kB
    assert all(len(line) <= 16 * 1024 for line in kept)
    assert kept[-1].startswith("[m] 2999 ")
    # Short lines are still kept by the line count, not the size.
    for i in range(5000):
        history.proxy(f"line {i}")
    assert len(history.history()) == 2000 and history.history()[-1] == "[halogen] line 4999"


# --- secrets from the environment ----------------------------------------------------------


async def test_values_from_env_references_are_masked_in_running_logs_and_stdout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = "sk-upstream-3f9a1c"
    monkeypatch.setenv("HALOGEN_TEST_SECRET", secret)
    site = Site(tmp_path)
    fake = site.fake("m", env=["FAKE_HIDDEN=env-value-7d2e"])
    # The file exists: a model whose -m file is missing is refused with a 503 before it starts.
    (tmp_path / f"{secret}.gguf").write_bytes(b"GGUF")
    site.models["m"]["cmd"] += (
        f" --note ${{env.HALOGEN_TEST_SECRET}} -m {tmp_path}/${{env.HALOGEN_TEST_SECRET}}.gguf"
    )
    stdout = io_module.StringIO()
    async with serving(site.write(), logs=Logs(echo_proxy=True, echo_upstream=True, out=stdout)) as proxy:
        assert await proxy.served_by("m") == "m"
        async with proxy.client.get("/running") as response:
            running = await response.text()
        async with proxy.client.get("/logs") as response:
            logged = await response.text()
        async with proxy.client.post("/api/show", json={"model": "m"}) as response:
            shown = await response.text()
    # The model got the real value.
    assert fake.events("start")[0]["argv"][-4:] == ["--note", secret, "-m", f"{tmp_path}/{secret}.gguf"]
    assert "--note ${env.HALOGEN_TEST_SECRET}" in json.loads(running)["running"][0]["cmd"]
    assert "starting model 'm'" in stdout.getvalue()
    for text in (running, logged, shown, stdout.getvalue()):
        assert secret not in text
        assert "env-value-7d2e" not in text


# --- names that differ only by ':latest' -----------------------------------------------------


@pytest.mark.parametrize(
    ("models", "field"),
    [
        ({"a": {}, "b": {"aliases": ["a:latest"]}}, "models.b.aliases[0]"),
        ({"a:latest": {}, "b": {"aliases": ["a"]}}, "models.b.aliases[0]"),
        ({"a": {}, "a:latest": {}}, "models.a:latest"),
        ({"a": {"aliases": ["x"]}, "b": {"aliases": ["x:latest"]}}, "models.b.aliases[0]"),
    ],
    ids=["alias a:latest beside model a", "alias a beside model a:latest", "two models", "two aliases"],
)
def test_names_that_differ_only_by_latest_on_two_models_are_refused_with_their_position(
    tmp_path: Path, models: dict[str, dict[str, object]], field: str
) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(
        yaml.safe_dump(
            {"models": {mid: {"cmd": "llama-server --port ${PORT}", **keys} for mid, keys in models.items()}}
        )
    )
    with pytest.raises(Invalid) as caught:
        io.load(path)
    (found,) = caught.value.diagnostics
    assert found.field == field and found.line > 1, found
    assert "differ only by ':latest'" in found.message


def test_an_alias_with_latest_on_its_own_model_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(
        yaml.safe_dump(
            {"models": {"a": {"cmd": "llama-server --port ${PORT}", "aliases": ["a:latest", "b"]}}}
        )
    )
    resolved, _ = io.load(path)
    assert resolved.lookup("a:latest") == resolved.lookup("b:latest") == "a"


# --- slow and idle clients -------------------------------------------------------------------

SHORT = Limits(header_timeout=0.5, idle_timeout=1.0, body_timeout=0.5, max_connections=6)


async def closed_by_server(reader: asyncio.StreamReader, patience: float = 10.0) -> bytes:
    """Everything the server sent until it closed the connection; fails if it stays open."""
    try:
        async with asyncio.timeout(patience):
            return await reader.read()
    except TimeoutError:
        raise AssertionError(f"the connection was still open after {patience} s") from None


async def test_a_connection_that_sends_nothing_is_closed_after_the_header_timeout(tmp_path: Path) -> None:
    site = Site(tmp_path)
    site.fake("m")
    async with serving(site.write(), limits=SHORT) as proxy:
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy.server.port)
        assert await closed_by_server(reader) == b""
        writer.close()


async def test_a_header_sent_a_byte_at_a_time_is_cut_off_at_the_header_timeout(tmp_path: Path) -> None:
    site = Site(tmp_path)
    site.fake("m")
    async with serving(site.write(), limits=SHORT) as proxy:
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy.server.port)
        head = b"GET /v1/models HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"a" * 200

        async def drip() -> None:
            for byte in head:  # 200 bytes at 0.1 s: far longer than the header timeout
                writer.write(bytes([byte]))
                await asyncio.sleep(0.1)

        dripping = asyncio.create_task(drip())
        try:
            assert await closed_by_server(reader) == b""
        finally:
            dripping.cancel()
            writer.close()


async def test_a_body_that_trickles_in_gets_408_after_the_body_timeout(tmp_path: Path) -> None:
    site = Site(tmp_path)
    fake = site.fake("m")
    async with serving(site.write(), limits=SHORT) as proxy:
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy.server.port)
        writer.write(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Content-Length: 1000\r\n\r\n{"
        )

        async def drip() -> None:
            for _ in range(100):
                writer.write(b" ")
                await asyncio.sleep(0.1)

        dripping = asyncio.create_task(drip())
        try:
            answer = await closed_by_server(reader)
        finally:
            dripping.cancel()
            writer.close()
        assert answer.startswith(b"HTTP/1.1 408 "), answer[:200]
        assert b"request_timeout" in answer
        assert fake.starts() == 0


async def test_a_huge_content_length_without_a_body_is_refused_at_once(tmp_path: Path) -> None:
    site = Site(tmp_path)
    site.fake("m")
    async with serving(site.write()) as proxy:  # the default limits: nothing here is timed
        for path in ("/v1/chat/completions", "/api/chat", "/upstream/m/props"):
            reader, writer = await asyncio.open_connection("127.0.0.1", proxy.server.port)
            writer.write(
                f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                "Content-Length: 10000000000\r\n\r\n".encode()
            )
            try:
                async with asyncio.timeout(10):
                    status_line = await reader.readline()
            finally:
                writer.close()
            assert status_line.startswith(b"HTTP/1.1 413 "), (path, status_line)


async def test_an_idle_keep_alive_connection_is_closed_but_a_long_stream_is_not(tmp_path: Path) -> None:
    site = Site(tmp_path)
    site.fake("m")
    async with serving(site.write(), limits=SHORT) as proxy:
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy.server.port)
        # A stream three times as long as every timeout: never cut.
        body = json.dumps({"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": True})
        writer.write(
            f"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"X-Fake-Chunks: 6\r\nX-Fake-Chunk-Delay: 0.5\r\nContent-Length: {len(body)}\r\n\r\n{body}".encode()
        )
        answer = b""
        async with asyncio.timeout(30):
            # To the chunked body's end, which may come in a segment after the last event's.
            while not (b"data: [DONE]" in answer and answer.endswith(b"0\r\n\r\n")):
                chunk = await reader.read(65536)
                assert chunk, f"the stream was cut: {answer[-300:]!r}"
                answer += chunk
        assert answer.startswith(b"HTTP/1.1 200 ")
        # Then idle on the kept-alive connection: closed after the idle timeout.
        assert await closed_by_server(reader) == b""
        writer.close()


async def test_connections_over_the_cap_get_503_and_the_rest_are_served(tmp_path: Path) -> None:
    site = Site(tmp_path)
    site.fake("m")
    limits = Limits(header_timeout=60, idle_timeout=60, body_timeout=60, max_connections=6)
    async with serving(site.write(), limits=limits) as proxy:
        held = [await asyncio.open_connection("127.0.0.1", proxy.server.port) for _ in range(6)]
        await asyncio.sleep(0.1)
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy.server.port)
        answer = await closed_by_server(reader)
        writer.close()
        assert answer.startswith(b"HTTP/1.1 503 "), answer
        # A held connection is still served.
        reader, writer = held[0]
        writer.write(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        assert (await closed_by_server(reader)).startswith(b"HTTP/1.1 200 ")
        for _, other in held:
            other.close()
        await asyncio.sleep(0.1)
        async with proxy.client.get("/health") as response:
            assert response.status == 200


async def test_halogen_serve_takes_the_connection_limits_from_its_command_line(tmp_path: Path) -> None:
    site = Site(tmp_path)
    site.fake("m")
    config = site.write()
    (port,) = free_ports(1)
    argv = [
        sys.executable,
        "-m",
        "halogen",
        "serve",
        "--config",
        str(config),
        "--listen",
        f"127.0.0.1:{port}",
    ]
    argv += ["--header-timeout", "0.5", "--max-connections", "3", "--no-watch"]
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        process = subprocess.Popen(argv, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_healthy(process, f"http://127.0.0.1:{port}", log.read_text)
        held = [await asyncio.open_connection("127.0.0.1", port) for _ in range(3)]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        assert (await closed_by_server(reader)).startswith(b"HTTP/1.1 503 ")
        writer.close()
        for reader, writer in held:  # silent: closed after the header timeout
            assert await closed_by_server(reader) == b""
            writer.close()
    finally:
        stop_serving(process)


# --- browsers on other sites ---------------------------------------------------------------

CHAT = json.dumps({"model": "m", "messages": [{"role": "user", "content": "hi"}]})


async def test_a_page_on_another_site_cannot_make_the_browser_generate_or_unload(tmp_path: Path) -> None:
    site = Site(tmp_path)
    fake = site.fake("m")
    async with serving(site.write()) as proxy:
        assert await proxy.served_by("m") == "m"
        requests = [
            # A simple request: text/plain needs no preflight, and the page need not read the answer.
            ("POST", "/v1/chat/completions", {"Content-Type": "text/plain", "Origin": "http://evil.example"}),
            ("POST", "/api/chat", {"Content-Type": "text/plain", "Origin": "null"}),
            ("GET", "/unload", {"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "no-cors"}),
            ("POST", "/unload", {"Origin": "http://192.168.1.20:3000"}),
            # An older browser's form post says where it comes from in Referer only.
            (
                "POST",
                "/v1/chat/completions",
                {"Content-Type": "application/x-www-form-urlencoded", "Referer": "http://evil.example/page"},
            ),
        ]
        for method, path, headers in requests:
            async with proxy.client.request(method, path, data=CHAT, headers=headers) as response:
                assert response.status == 403, (method, path, headers, await response.text())
                error = (await response.json())["error"]
                message = error if path.startswith("/api/") else error["message"]
                assert "--allow-origin" in message
        assert await proxy.running() == {"m": "ready"}
        assert len(fake.events("request")) == 1


async def test_a_text_plain_body_on_a_json_route_is_refused_even_without_an_origin(tmp_path: Path) -> None:
    site = Site(tmp_path)
    fake = site.fake("m")
    async with serving(site.write()) as proxy:
        for path in ("/v1/chat/completions", "/api/chat"):
            async with proxy.client.post(path, data=CHAT, headers={"Content-Type": "text/plain"}) as response:
                assert response.status == 415, await response.text()
        assert fake.starts() == 0


async def test_curl_and_api_clients_are_unaffected(tmp_path: Path) -> None:
    site = Site(tmp_path)
    site.fake("m")
    async with serving(site.write()) as proxy:
        for headers in (
            {"Content-Type": "application/json"},
            # `curl -d '{...}'` with no -H, as Ollama's own API docs write it.
            {"Content-Type": "application/x-www-form-urlencoded"},
            {},
        ):
            for path in ("/v1/chat/completions", "/api/chat"):
                async with proxy.client.post(
                    path, data=CHAT.encode(), headers=headers, skip_auto_headers=["Content-Type"]
                ) as response:
                    assert response.status == 200, (path, headers, await response.text())
        # A browser opening an address itself is not cross-site.
        async with proxy.client.get("/v1/models", headers={"Sec-Fetch-Site": "none"}) as response:
            assert response.status == 200


async def test_an_allowed_origin_may_call_the_api_and_read_its_answers(tmp_path: Path) -> None:
    site = Site(tmp_path)
    site.fake("m")
    site.top["apiKeys"] = ["sk-good"]
    allowed = "http://chat.lan:3000"
    async with serving(site.write(), allow_origins=(allowed, "http://other.lan")) as proxy:
        # The preflight carries no key.
        async with proxy.client.options(
            "/v1/chat/completions",
            headers={
                "Origin": allowed,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "content-type, authorization, bad header",
            },
        ) as response:
            assert response.status == 204
            assert response.headers["Access-Control-Allow-Origin"] == allowed
            assert response.headers["Access-Control-Allow-Headers"] == "content-type, authorization"
        body = json.loads(CHAT) | {"stream": True}
        headers = {"Origin": allowed, "Authorization": "Bearer sk-good", "Sec-Fetch-Site": "cross-site"}
        async with proxy.client.post("/v1/chat/completions", json=body, headers=headers) as response:
            assert response.status == 200
            assert response.headers["Access-Control-Allow-Origin"] == allowed
            assert b"[DONE]" in await response.read()
        async with proxy.client.get(
            "/v1/models", headers={**headers, "Origin": "http://evil.example"}
        ) as response:
            assert response.status == 403
            assert "Access-Control-Allow-Origin" not in response.headers


# --- a model's own key ---------------------------------------------------------------------


@pytest.mark.parametrize("api_keys", [["sk-client"], []], ids=["apiKeys set", "no apiKeys"])
async def test_a_model_started_with_api_key_is_sent_its_own_key_in_place_of_the_client_s(
    tmp_path: Path, api_keys: list[str]
) -> None:
    site = Site(tmp_path)
    fake = site.fake("m", "--api-key", "sk-upstream")
    site.top["apiKeys"] = api_keys
    client = {"Authorization": "Bearer sk-client"} if api_keys else {}
    async with serving(site.write()) as proxy:
        assert await proxy.served_by("m", **client) == "m"
        async with proxy.client.post(
            "/api/chat",
            json={"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": False},
            headers=client,
        ) as response:
            assert response.status == 200, await response.text()
        async with proxy.client.get("/upstream/m/props", headers=client) as response:
            assert response.status == 200
    seen = [event["headers"] for event in fake.events("request")]
    assert len(seen) == 3
    assert all(h.get("authorization") == "Bearer sk-upstream" and "x-api-key" not in h for h in seen)


def test_the_upstream_key_is_read_from_api_key_or_llama_api_key() -> None:
    from halogen.runtime.forward.proxy import upstream_key

    def runnable(*argv: str, env: tuple[tuple[str, str], ...] = ()) -> Runnable:
        return Runnable(
            id="m",
            argv=("llama-server", *argv),
            stop_argv=(),
            proxy="http://127.0.0.1:1",
            check_endpoint="",
            env=env,
            group="g",
        )

    assert upstream_key(runnable("--api-key", "a,b")) == "a"
    assert upstream_key(runnable("--api-key=k", "--port", "1")) == "k"
    assert upstream_key(runnable(env=(("LLAMA_API_KEY", "e"),))) == "e"
    assert upstream_key(runnable("--api-key", "flag", env=(("LLAMA_API_KEY", "e"),))) == "flag"
    assert upstream_key(runnable("--port", "1")) is None


# --- the real path -------------------------------------------------------------------------


@pytest.mark.real
def test_a_real_llama_server_with_its_own_key_serves_through_the_proxy_and_the_key_is_never_shown(
    tmp_path: Path, llama_server: Path, smollm2_gguf: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = "sk-upstream-5be1d07a"
    monkeypatch.setenv("HALOGEN_TEST_UPSTREAM_KEY", secret)
    port = free_port_run(1)
    cmd = (
        f"{llama_server} --port ${{PORT}} --host 127.0.0.1 -m {smollm2_gguf} -c 512 -t 1 -ngl 0"
        " --api-key ${env.HALOGEN_TEST_UPSTREAM_KEY}"
    )
    config = tmp_path / "config.yaml"
    config.write_text(
        yaml.safe_dump({"startPort": port, "apiKeys": ["sk-client"], "models": {"smol": {"cmd": cmd}}})
    )
    key = {"Authorization": "Bearer sk-client"}
    with halogen_serve(config, tmp_path / "serve.log", "--no-watch") as served:
        client = openai.OpenAI(base_url=served.url + "/v1", api_key="sk-client", timeout=PATIENCE * 4)
        answer = client.chat.completions.create(
            model="smol", messages=[{"role": "user", "content": "Say hello."}], max_tokens=4, temperature=0
        )
        assert answer.choices[0].message.content is not None
        # The model's own server refuses a request without its key: the proxy sent it.
        request = urllib.request.Request(f"http://127.0.0.1:{port}/v1/models")
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=PATIENCE)
        assert refused.value.code == 401
        shown = []
        for path in ("/running", "/logs"):
            with urllib.request.urlopen(
                urllib.request.Request(served.url + path, headers=key), timeout=PATIENCE
            ) as response:
                shown.append(response.read().decode())
        assert "--api-key ${env.HALOGEN_TEST_UPSTREAM_KEY}" in json.loads(shown[0])["running"][0]["cmd"]
        shown.append(served.output())
    assert all(secret not in text for text in shown)


def test_serve_takes_allowed_origins_from_its_option_and_from_halogen_allow_origins(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from click.testing import CliRunner

    from halogen import cli
    from halogen.runtime.serve import server

    seen: list[dict[str, object]] = []

    def serve(config_path: object, **options: object) -> int:
        seen.append(options)
        return 0

    monkeypatch.setattr(server, "serve", serve)
    runner = CliRunner()
    done = runner.invoke(cli.main, ["serve", "--allow-origin", "http://a.lan", "--allow-origin", "*"])
    assert done.exit_code == 0, done.output
    done = runner.invoke(cli.main, ["serve"], env={"HALOGEN_ALLOW_ORIGINS": "http://b.lan https://c.lan"})
    assert done.exit_code == 0, done.output
    assert [options["allow_origins"] for options in seen] == [
        ("http://a.lan", "*"),
        ("http://b.lan", "https://c.lan"),
    ]
