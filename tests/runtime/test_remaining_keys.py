"""The last llama-swap keys, each as llama-swap's source runs it: `capabilities` in /v1/models
(internal/server/api.go) and Ollama's capabilities, per-model `timeouts`, `upstream.ignorePaths`
and `compat.ignoreWebsockets` on /upstream (internal/server/api.go, process_command.go), and
`logTimeFormat` (internal/logmon/logging.go)."""

from __future__ import annotations

import asyncio
import re
import shlex
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from halogen.runtime.base.logs import stamp

from .harness import Site, serving

CAPS = {"in": ["text", "image"], "out": ["text"], "tools": True, "context": 8192}


async def test_capabilities_are_rendered_in_the_model_list_as_llama_swap_renders_them(tmp_path: Path) -> None:
    site = Site(tmp_path)
    site.fake(
        "vision", capabilities=CAPS, metadata={"family": "qwen", "context_length": 1, "capabilities": "x"}
    )
    site.fake("speaker", capabilities={"in": ["text"], "out": ["audio"]})
    site.fake("ranker", capabilities={"reranker": True})
    site.fake("plain")
    async with serving(site.write()) as proxy:
        async with proxy.client.get("/v1/models") as response:
            rows = {row["id"]: row for row in (await response.json())["data"]}
        async with proxy.client.post("/api/show", json={"model": "vision"}) as response:
            shown = await response.json()
    vision = rows["vision"]
    assert vision["architecture"] == {
        "input_modalities": ["text", "image"],
        "output_modalities": ["text"],
        "modality": "text+image->text",
    }
    assert vision["capabilities"] == {"vision": True, "function_calling": True}
    assert vision["supported_parameters"] == ["tools", "tool_choice"]
    assert vision["context_length"] == 8192
    # The rendered fields win over metadata keys of the same name.
    assert vision["meta"] == {"llamaswap": {"family": "qwen"}, "n_ctx": 8192}
    assert rows["speaker"]["capabilities"] == {"audio_speech": True}
    assert rows["ranker"]["capabilities"] == {"reranker": True} and "architecture" not in rows["ranker"]
    assert not {"architecture", "capabilities", "context_length"} & set(rows["plain"])
    # Ollama has names for tools and image input; the context is the model's context length.
    assert shown["capabilities"] == ["completion", "tools", "vision"]
    info = shown["model_info"]
    assert info[info["general.architecture"] + ".context_length"] == 8192


@asynccontextmanager
async def silent_server() -> AsyncIterator[int]:
    """A server that takes connections and requests and never answers."""
    held: list[asyncio.StreamWriter] = []

    async def take(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)
        await reader.read(65536)

    server = await asyncio.start_server(take, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        for writer in held:
            writer.close()
        server.close()


async def test_a_model_that_sends_no_headers_within_its_response_header_timeout_is_a_502(
    tmp_path: Path,
) -> None:
    site = Site(tmp_path)
    async with silent_server() as port:
        site.models["mute"] = {
            "cmd": shlex.join([sys.executable, "-c", "import time; time.sleep(600)"]),
            "proxy": f"http://127.0.0.1:{port}",
            "checkEndpoint": "none",
            "timeouts": {"responseHeader": 1},
        }
        async with serving(site.write()) as proxy:
            began = asyncio.get_running_loop().time()
            async with await proxy.chat("mute") as response:
                assert response.status == 502
                message = (await response.json())["error"]["message"]
            waited = asyncio.get_running_loop().time() - began
    assert "sent no response headers within 1 s (timeouts.responseHeader)" in message
    assert waited < 30  # ended by its own timeout, not the test's


async def test_timeouts_set_the_connect_limit_and_shorten_the_pools_keep_alive(tmp_path: Path) -> None:
    site = Site(tmp_path)
    site.fake("m", timeouts={"connect": 7, "idleConn": 1})
    site.fake("n", timeouts={"connect": 0})
    async with serving(site.write()) as proxy:
        m, n = proxy.swapper.upstream("m").pool, proxy.swapper.upstream("n").pool
        assert m.session.timeout.sock_connect == 7 and n.session.timeout.sock_connect is None
        assert m.session.connector._keepalive_timeout == 1  # type: ignore[union-attr]


async def test_an_ignored_upstream_path_never_starts_a_model_but_reaches_a_running_one(
    tmp_path: Path,
) -> None:
    site = Site(tmp_path)
    fake = site.fake("m")
    custom = site.fake("c")
    site.top["upstream"] = {"ignorePaths": ["^/props$"]}
    async with serving(site.write()) as proxy:
        async with proxy.client.get("/upstream/m/props") as response:
            assert response.status == 409
            assert "path matches upstream.ignorePaths" in (await response.json())["error"]["message"]
        async with proxy.client.get("/upstream/m/app.js") as response:
            assert response.status == 200  # the default pattern is replaced by the config's
        assert fake.starts() == 1
        async with proxy.client.get("/upstream/m/props") as response:
            assert response.status == 200  # running: nothing to start
        async with proxy.client.get("/upstream/c/props") as response:
            assert response.status == 409
        assert custom.starts() == 0


async def test_static_assets_do_not_start_a_model_by_default(tmp_path: Path) -> None:
    site = Site(tmp_path)
    fake = site.fake("m")
    async with serving(site.write()) as proxy:
        for path in ("/upstream/m/index.js", "/upstream/m/style.css", "/upstream/m/favicon.ico"):
            async with proxy.client.get(path) as response:
                assert response.status == 409, path
    assert fake.starts() == 0


async def test_a_websocket_does_not_start_a_model_that_ignores_websockets(tmp_path: Path) -> None:
    site = Site(tmp_path)
    quiet = site.fake("quiet", compat={"ignoreWebsockets": True})
    other = site.fake("other")
    upgrade = {"Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13"}
    async with serving(site.write()) as proxy:
        # On /upstream and on a model route that names it in the query (TestServer_SelectorMiddleware_
        # IgnoredWebsocketDoesNotReserveSpillover in internal/server/selector_test.go uses /props).
        for target in ("/upstream/quiet/ws", "/props?model=quiet"):
            async with proxy.client.get(target, headers=upgrade) as response:
                assert response.status == 503
                assert "process is not ready" in (await response.json())["error"]["message"]
        async with proxy.client.get("/upstream/other/ws", headers=upgrade) as response:
            assert response.status == 200
    assert quiet.starts() == 0 and other.starts() == 1


MOMENT = datetime(2026, 1, 2, 15, 4, 5, 123456, tzinfo=UTC)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("", ""),
        ("ansic", "Fri Jan  2 15:04:05 2026"),
        ("unixdate", "Fri Jan  2 15:04:05 UTC 2026"),
        ("rubydate", "Fri Jan 02 15:04:05 +0000 2026"),
        ("rfc822", "02 Jan 26 15:04 UTC"),
        ("rfc822z", "02 Jan 26 15:04 +0000"),
        ("rfc850", "Friday, 02-Jan-26 15:04:05 UTC"),
        ("rfc1123", "Fri, 02 Jan 2026 15:04:05 UTC"),
        ("rfc1123z", "Fri, 02 Jan 2026 15:04:05 +0000"),
        ("rfc3339", "2026-01-02T15:04:05Z"),
        ("rfc3339nano", "2026-01-02T15:04:05.123456Z"),
        ("kitchen", "3:04PM"),
        ("stamp", "Jan  2 15:04:05"),
        ("stampmilli", "Jan  2 15:04:05.123"),
        ("stampmicro", "Jan  2 15:04:05.123456"),
        ("stampnano", "Jan  2 15:04:05.123456000"),
    ],
)
def test_log_time_formats_are_gos_layouts(name: str, expected: str) -> None:
    # The layouts of Go's time package (time.ANSIC ... time.StampNano) at 2026-01-02 15:04:05.
    assert stamp(name, MOMENT) == expected


def test_rfc3339_gives_the_zone_offset_outside_utc() -> None:
    east = MOMENT.astimezone(timezone(timedelta(hours=2)))
    assert stamp("rfc3339", east) == "2026-01-02T17:04:05+02:00"


async def test_log_time_format_stamps_the_proxys_lines_but_not_a_models_output(tmp_path: Path) -> None:
    site = Site(tmp_path)
    site.fake("m")
    site.top["logTimeFormat"] = "rfc3339"
    async with serving(site.write()) as proxy:
        await (await proxy.chat("m")).release()
        async with proxy.client.get("/logs") as response:
            lines = (await response.text()).splitlines()
    ours = [line for line in lines if "[halogen]" in line]
    assert ours and all(
        re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(Z|[+-]\d\d:\d\d) \[halogen\] ", x) for x in ours
    )
    assert any(line.startswith("[m] ") for line in lines)
