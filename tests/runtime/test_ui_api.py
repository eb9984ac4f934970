"""llama-swap's UI API in `halogen serve` (/api/events, /api/inflight/{id}/cancel, ...), against
fake llama-servers run as real processes: what llama-swap's UI (ui/src/stores/api.ts) reads."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import aiohttp

from tests.runtime.harness import PATIENCE, Site, eventually, serving


class Events:
    """An /api/events client: the envelopes as they come, `data` parsed."""

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self.response = response
        self.seen: list[tuple[str, Any]] = []
        self._buffer = b""

    async def next(self) -> tuple[str, Any]:
        while b"\n\n" not in self._buffer:
            chunk = await asyncio.wait_for(self.response.content.readany(), PATIENCE)
            assert chunk, "the event stream ended"
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\n\n", 1)
        lines = message.decode().split("\n")
        assert lines[0] == "event:message", lines
        assert lines[1].startswith("data:"), lines
        envelope = json.loads(lines[1][5:])
        assert set(envelope) == {"type", "data"}
        assert isinstance(envelope["data"], str)
        item = (envelope["type"], json.loads(envelope["data"]))
        self.seen.append(item)
        return item

    async def until(self, kind: str, test: Any = lambda data: True) -> Any:
        while True:
            got, data = await self.next()
            if got == kind and test(data):
                return data


def _site(tmp_path: Path, **top: Any) -> Site:
    site = Site(tmp_path, top=dict(top))
    site.fake("alpha", name="Alpha", description="the first", aliases=["a1"])
    site.fake("beta")
    return site


async def test_a_client_of_the_event_stream_is_sent_the_state_first_in_llama_swaps_order(
    tmp_path: Path,
) -> None:
    site = _site(tmp_path)
    async with serving(site.write()) as proxy, proxy.client.get("/api/events") as response:
        assert response.status == 200
        assert response.headers["Content-Type"] == "text/event-stream"
        assert response.headers["X-Accel-Buffering"] == "no"
        events = Events(response)
        first = [await events.next() for _ in range(6)]
    kinds = [kind for kind, _ in first]
    # handleAPIEvents (internal/server/apigroup.go): logs, models, ui config, profile, inflight.
    assert kinds == ["logData", "logData", "modelStatus", "uiConfig", "profileChanged", "inflight"]
    assert [data["source"] for _, data in first[:2]] == ["proxy", "upstream"]
    assert "listening on" in first[0][1]["data"]
    models = first[2][1]
    assert models[0] == {
        "id": "alpha",
        "name": "Alpha",
        "description": "the first",
        "state": "stopped",
        "unlisted": False,
        "peerID": "",
        "aliases": ["a1"],
    }
    assert [m["id"] for m in models] == ["alpha", "beta"]
    assert first[3][1] == {"activity": {"session_id": ["X-Session-ID", "X-Litellm-Session-Id"]}}
    assert first[4][1] == {"active": None}
    assert first[5][1] == {"operation": "snapshot", "requests": []}


async def test_the_ui_block_of_the_config_is_what_uiconfig_sends(tmp_path: Path) -> None:
    site = _site(tmp_path, ui={"activity": {"session_id": [" X-Trace-ID ", "", "x-trace-id"]}})
    async with serving(site.write()) as proxy, proxy.client.get("/api/events") as response:
        config = await Events(response).until("uiConfig")
    assert config == {"activity": {"session_id": ["X-Trace-ID"]}}


async def test_a_model_that_starts_and_stops_shows_each_state_on_the_event_stream(tmp_path: Path) -> None:
    site = _site(tmp_path)
    async with serving(site.write()) as proxy, proxy.client.get("/api/events") as response:
        events = Events(response)
        await events.until("inflight")

        def state(models: list[dict[str, Any]]) -> str:
            return str(next(m["state"] for m in models if m["id"] == "alpha"))

        chat = asyncio.create_task(proxy.served_by("alpha"))
        await events.until("modelStatus", lambda models: state(models) == "starting")
        await events.until("modelStatus", lambda models: state(models) == "ready")
        assert await chat == "alpha"
        async with proxy.client.post("/api/models/unload") as unloaded:
            assert unloaded.status == 200
        await events.until("modelStatus", lambda models: state(models) == "stopping")
        await events.until("modelStatus", lambda models: state(models) == "stopped")


async def test_a_profile_change_is_sent_as_profilechanged_then_the_models(tmp_path: Path) -> None:
    site = _site(tmp_path, profiles={"fast": {"description": "d", "pins": {"beta": "alpha"}}})
    async with serving(site.write()) as proxy, proxy.client.get("/api/events") as response:
        events = Events(response)
        await events.until("inflight")
        async with proxy.client.put("/api/profiles/active", json={"name": "fast"}) as put:
            assert put.status == 200
        assert await events.until("profileChanged") == {"active": "fast"}
        assert events.seen[-1][0] == "profileChanged"
        await events.until("modelStatus")


async def test_a_request_in_flight_is_listed_then_removed(tmp_path: Path) -> None:
    site = _site(tmp_path)
    async with serving(site.write()) as proxy:
        await proxy.served_by("alpha")  # started: what follows is the request alone
        async with proxy.client.get("/api/events") as response:
            events = Events(response)
            await events.until("inflight")
            headers = {"X-Fake-Chunks": "4", "X-Fake-Chunk-Delay": "0.2", "Authorization": "Bearer secret"}
            chat = await proxy.chat("alpha", stream=True, headers=headers)
            added = await events.until("inflight", lambda d: d["operation"] == "upsert")
            row = added["request"]
            assert row["model"] == "alpha"
            assert row["req_path"] == "/v1/chat/completions"
            assert row["method"] == "POST"
            assert row["remote_ip"] == "127.0.0.1"
            assert row["req_headers"]["Authorization"] == "[REDACTED]"
            grown = await events.until(
                "inflight", lambda d: d["operation"] == "upsert" and d["request"]["resp_bytes"] > 0
            )
            assert grown["request"]["id"] == row["id"]
            assert grown["request"]["resp_headers"]["Content-Type"] == "text/event-stream"
            await chat.read()
            chat.release()
            removed = await events.until("inflight", lambda d: d["operation"] == "remove")
            assert removed == {"operation": "remove", "id": row["id"]}


async def test_cancel_ends_a_streamed_answer_and_closes_the_upstream_connection(tmp_path: Path) -> None:
    site = _site(tmp_path)
    fake = site.fakes["alpha"]
    async with serving(site.write()) as proxy:
        await proxy.served_by("alpha")
        async with proxy.client.get("/api/events") as response:
            events = Events(response)
            await events.until("inflight")
            headers = {"X-Fake-Chunks": "200", "X-Fake-Chunk-Delay": "0.05"}
            chat = await proxy.chat("alpha", stream=True, headers=headers)
            assert chat.status == 200
            row = (await events.until("inflight", lambda d: d["operation"] == "upsert"))["request"]
            async with proxy.client.post(f"/api/inflight/{row['id']}/cancel") as cancelled:
                assert cancelled.status == 200
                assert await cancelled.json() == {"msg": "ok"}
            body = b""
            try:
                async for chunk in chat.content.iter_any():
                    body += chunk
            except aiohttp.ClientPayloadError:
                pass  # the answer was cut off: also an end
            assert b"[DONE]" not in body
            await events.until("inflight", lambda d: d == {"operation": "remove", "id": row["id"]})
            await eventually(lambda: bool(fake.events("disconnect")), "the fake saw the proxy hang up")


async def test_cancel_of_a_request_not_in_flight_is_a_404_in_llama_swaps_shape(tmp_path: Path) -> None:
    site = _site(tmp_path)
    async with serving(site.write()) as proxy:
        for name in ("1", "999", "not-a-number", "%00"):
            async with proxy.client.post(f"/api/inflight/{name}/cancel") as response:
                assert response.status == 404, name
                assert await response.json() == {"src": "llama-swap", "error": "inflight request not found"}


async def test_with_api_keys_the_ui_api_asks_a_browser_for_the_key_and_takes_it_as_basics_password(
    tmp_path: Path,
) -> None:
    site = _site(tmp_path, apiKeys=["sk-ui"])
    async with serving(site.write()) as proxy:
        for path in ("/api/events", "/api/profiles"):
            for headers in ({}, {"Authorization": "Basic " + _basic("user", "sk-wrong")}):
                async with proxy.client.get(path, headers=headers) as response:
                    assert response.status == 401, path
                    assert response.headers["WWW-Authenticate"] == 'Basic realm="llama-swap"'
                    assert await response.json() == {
                        "src": "llama-swap",
                        "error": "unauthorized: invalid or missing API key",
                    }
        async with proxy.client.post("/api/inflight/1/cancel") as response:
            assert response.status == 401
        # What a browser sends once the user typed the key as the password (any user name).
        for headers in (
            {"Authorization": "Basic " + _basic("anyone", "sk-ui")},
            {"Authorization": "Bearer sk-ui"},
            {"x-api-key": "sk-ui"},
        ):
            async with proxy.client.get("/api/events", headers=headers) as response:
                assert response.status == 200, headers
                assert (await Events(response).next())[0] == "logData"


def _basic(user: str, password: str) -> str:
    import base64

    return base64.b64encode(f"{user}:{password}".encode()).decode()


async def test_fifty_event_clients_that_never_read_are_dropped_and_never_hold_the_proxy(
    tmp_path: Path,
) -> None:
    site = _site(tmp_path)
    async with serving(site.write()) as proxy:
        port = proxy.server.port
        stalled = []
        for _ in range(50):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET /api/events HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            await writer.drain()
            stalled.append((reader, writer))
        hub = proxy.server.runtime.events
        await eventually(lambda: len(hub) == 50, "50 subscribers")
        # Far more than a socket's buffers and the 1024-message queue of each client hold.
        line = "x" * 1000
        for i in range(20_000):
            proxy.server.logs.proxy(f"{i} {line}")
            if i % 500 == 0:
                await asyncio.sleep(0)  # the publisher runs
                async with proxy.client.get("/health") as health:
                    assert health.status == 200
        await eventually(lambda: hub.dropped == 50 and len(hub) == 0, "every stalled client dropped")
        async with proxy.client.get("/health") as health:
            assert health.status == 200
        assert await proxy.served_by("alpha") == "alpha"
        for reader, writer in stalled:
            # The proxy ended the connection: what was sent is there, then the end.
            while await asyncio.wait_for(reader.read(1 << 20), PATIENCE):
                pass
            writer.close()


async def _activity(proxy: Any, query: str = "") -> Any:
    async with proxy.client.get("/api/metrics/activity" + query) as response:
        assert response.status == 200, await response.text()
        return await response.json()


async def test_each_request_to_a_model_is_one_activity_row_announced_on_the_event_stream(
    tmp_path: Path,
) -> None:
    site = _site(tmp_path)
    async with serving(site.write()) as proxy, proxy.client.get("/api/events") as response:
        events = Events(response)
        await events.until("inflight")
        assert await proxy.served_by("alpha") == "alpha"
        first = await events.until("activity")
        async with await proxy.chat("beta", stream=True) as streamed:
            await streamed.read()
        second = await events.until("activity")
        assert second == {"id": first["id"] + 1}
        page = await _activity(proxy)
    assert (page["page"], page["limit"], page["total"], page["total_pages"]) == (1, 25, 2, 1)
    newest, oldest = page["data"]  # newest first
    assert newest["id"] == second["id"] and oldest["id"] == first["id"]
    assert oldest["model"] == "alpha" and oldest["req_path"] == "/v1/chat/completions"
    assert oldest["resp_status_code"] == 200
    assert oldest["resp_content_type"].startswith("application/json")
    # The fake's usage and timings (prompt_n 7, predicted_n 3, cache_n 0, predicted_per_second
    # 800; no prompt speed given).
    assert oldest["tokens"] == {
        "cache_tokens": 0,
        "draft_tokens": -1,
        "draft_acc_tokens": -1,
        "input_tokens": 7,
        "output_tokens": 3,
        "prompt_per_second": 0.0,
        "tokens_per_second": 800.0,
    }
    assert newest["tokens"]["input_tokens"] == 11 and newest["tokens"]["output_tokens"] == 3
    assert newest["resp_content_type"] == "text/event-stream"
    assert oldest["has_capture"] is True and "error_msg" not in oldest
    assert oldest["timestamp"].endswith("Z")


async def test_the_activity_log_keeps_the_newest_metrics_max_in_memory_rows(tmp_path: Path) -> None:
    site = _site(tmp_path, metricsMaxInMemory=3)
    async with serving(site.write()) as proxy:
        for _ in range(5):
            await proxy.served_by("alpha")
        page = await _activity(proxy)
        assert [row["id"] for row in page["data"]] == [5, 4, 3]
        stats = await (await proxy.client.get("/api/metrics/stats")).json()
    assert stats["total_requests"] == 3
    assert (stats["total_input_tokens"], stats["total_output_tokens"], stats["total_cache_tokens"]) == (
        21,
        9,
        0,
    )
    assert stats["prompt_histogram"] is None  # the fake gives no prompt speed
    generation = stats["gen_histogram"]  # its predicted_per_second, 800, on each of the three rows
    assert (generation["min"], generation["max"], sum(generation["bins"])) == (800.0, 800.0, 3)


async def test_a_failed_request_is_recorded_with_its_error_and_its_request_captured(tmp_path: Path) -> None:
    site = _site(tmp_path)
    async with serving(site.write()) as proxy:
        async with proxy.client.post(
            "/upstream/alpha/nowhere", data=b"x", headers={"X-Fake-Status": "503"}
        ) as r:
            assert r.status == 503
            await r.read()
        page = await _activity(proxy)
        failed = page["data"][0]
        assert failed["resp_status_code"] == 503 and failed["req_path"] == "/upstream/alpha/nowhere"
        assert failed["error_msg"] == "fake failure"  # the upstream's error.message
        assert failed["has_capture"] is True
        capture = await (await proxy.client.get(f"/api/captures/{failed['id']}")).json()
    # The request only: the failure is the row's error_msg (record, internal/server/metrics.go).
    assert capture["req_body"] == "eA==" and capture["resp_body"] == ""


async def test_activity_query_parameters_filter_sort_and_refuse_garbage(tmp_path: Path) -> None:
    site = _site(tmp_path)
    async with serving(site.write()) as proxy:
        for model in ("alpha", "beta", "alpha"):
            await proxy.served_by(model)
        assert [r["id"] for r in (await _activity(proxy, "?model=alpha"))["data"]] == [3, 1]
        assert [r["id"] for r in (await _activity(proxy, "?model=alpha&model=beta&order=asc"))["data"]] == [
            1,
            2,
            3,
        ]
        assert [r["id"] for r in (await _activity(proxy, "?sort=model&order=desc"))["data"]] == [2, 3, 1]
        paged = await _activity(proxy, "?limit=2&page=2")
        assert ([r["id"] for r in paged["data"]], paged["total_pages"]) == ([1], 2)
        assert [r["id"] for r in (await _activity(proxy, "?min_id=2&max_id=2"))["data"]] == [2]
        assert (await _activity(proxy, "?start=2000-01-01T00:00:00Z&end=2999-01-01T00:00:00%2B02:00"))[
            "total"
        ] == 3
        for query, message in (
            ("limit=0", "limit must be between 1 and 999"),
            ("limit=abc", "invalid limit"),
            ("page=-1", "page must be >= 1"),
            ("sort=id;DROP TABLE activity", "invalid sort column"),
            ("order=sideways", "order must be asc or desc"),
            ("start=yesterday", "invalid 'start' timestamp, use RFC3339 format"),
            ("start=2026-01-01", "invalid 'start' timestamp, use RFC3339 format"),
            ("start=2026-01-02T00:00:00Z&end=2026-01-01T00:00:00Z", "start must be before end"),
            ("min_id=0", "min_id must be >= 1"),
            ("min_id=3&max_id=2", "min_id must be <= max_id"),
        ):
            async with proxy.client.get("/api/metrics/activity?" + query) as response:
                assert response.status == 400, query
                assert await response.json() == {"src": "llama-swap", "error": message}
        assert (await _activity(proxy))["total"] == 3


async def test_a_capture_holds_both_bodies_and_hides_the_credentials(tmp_path: Path) -> None:
    site = _site(tmp_path)
    async with serving(site.write()) as proxy:
        async with await proxy.chat("alpha", headers={"Authorization": "Bearer sk-not-shown"}) as answer:
            answered = await answer.read()
        row = (await _activity(proxy))["data"][0]
        async with proxy.client.get(f"/api/captures/{row['id']}") as response:
            capture = await response.json()
    import base64

    assert set(capture) == {"id", "req_path", "req_headers", "req_body", "resp_headers", "resp_body"}
    assert capture["id"] == row["id"] and capture["req_path"] == "/v1/chat/completions"
    assert json.loads(base64.b64decode(capture["req_body"]))["messages"] == [
        {"role": "user", "content": "hi"}
    ]
    assert base64.b64decode(capture["resp_body"]) == answered
    assert capture["req_headers"]["Authorization"] == "[REDACTED]"
    assert "sk-not-shown" not in json.dumps(capture)


async def test_capture_ids_that_are_no_number_or_not_kept_are_refused(tmp_path: Path) -> None:
    site = _site(tmp_path)
    async with serving(site.write()) as proxy:
        for raw, status, message in (
            ("1", 404, "capture not found"),
            ("-1", 404, "capture not found"),
            ("abc", 400, "invalid capture ID"),
            ("1.5", 400, "invalid capture ID"),
            ("99999999999999999999999", 400, "invalid capture ID"),
            ("%20", 400, "invalid capture ID"),
        ):
            async with proxy.client.get(f"/api/captures/{raw}") as response:
                assert response.status == status, raw
                assert await response.json() == {"src": "llama-swap", "error": message}


async def test_captures_are_off_at_zero_and_a_body_bigger_than_the_buffer_is_not_kept(tmp_path: Path) -> None:
    site = _site(tmp_path, captureBuffer=0)
    async with serving(site.write()) as proxy:
        await proxy.served_by("alpha")
        row = (await _activity(proxy))["data"][0]
        assert row["has_capture"] is False
        assert (await proxy.client.get(f"/api/captures/{row['id']}")).status == 404
    site = _site(tmp_path, captureBuffer=1)
    async with serving(site.write()) as proxy:
        huge = "y" * (2 * 1024 * 1024)  # 2 MB: more than the whole 1 MB buffer
        async with await proxy.chat("alpha", messages=[{"role": "user", "content": huge}]) as answer:
            assert answer.status == 200
        await proxy.served_by("alpha")
        big, small = (await _activity(proxy))["data"][1], (await _activity(proxy))["data"][0]
        assert big["has_capture"] is False and small["has_capture"] is True


def _get_json(url: str) -> Any:
    import urllib.request

    request = urllib.request.Request(url, headers={"Host": "127.0.0.1"})
    with urllib.request.urlopen(request, timeout=PATIENCE) as response:
        return json.loads(response.read())


def _chat(url: str, model: str) -> None:
    import urllib.request

    body = json.dumps({"model": model, "messages": [{"role": "user", "content": "hi"}]}).encode()
    request = urllib.request.Request(
        url + "/v1/chat/completions", data=body, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=PATIENCE) as response:
        assert response.status == 200


def test_with_store_path_the_activity_survives_a_restart_of_halogen_serve(tmp_path: Path) -> None:
    from tests.runtime.processes import halogen_serve

    store = tmp_path / "state" / "activity.sqlite"
    store.parent.mkdir()
    site = _site(tmp_path, store={"path": str(store)})
    config = site.write()
    with halogen_serve(config, tmp_path / "first.log", "--no-watch") as first:
        _chat(first.url, "alpha")
        _chat(first.url, "beta")
        before = _get_json(first.url + "/api/metrics/activity")
        assert first.stop() == 0
    assert [row["model"] for row in before["data"]] == ["beta", "alpha"]
    with halogen_serve(config, tmp_path / "second.log", "--no-watch") as second:
        after = _get_json(second.url + "/api/metrics/activity")
        _chat(second.url, "alpha")
        newest = _get_json(second.url + "/api/metrics/activity?limit=1")["data"][0]
    kept = [{k: v for k, v in row.items() if k != "has_capture"} for row in after["data"]]
    assert kept == [{k: v for k, v in row.items() if k != "has_capture"} for row in before["data"]]
    assert newest["id"] == 3  # ids go on from the file's


def test_a_store_path_that_cannot_be_opened_is_refused_with_its_name(tmp_path: Path) -> None:
    from tests.runtime.processes import runtime

    site = _site(tmp_path, store={"path": str(tmp_path)})  # a directory
    done = runtime(site.write())
    assert done.returncode == 1
    assert f"halogen serve: store.path {tmp_path}:" in done.stderr
    assert "Traceback" not in done.stderr


def test_the_ui_keys_are_checked_as_llama_swap_checks_them(tmp_path: Path) -> None:
    import pytest

    from halogen.diagnostics import Invalid
    from halogen.llamaswap import io

    models = "models:\n  m: {cmd: 's --port ${PORT}'}\n"
    for text, field in (
        ("store: {path: ''}\n", "store.path"),
        ("store: {path: '   '}\n", "store.path"),
        ("store: {}\n", "store.path"),
        ("performance: {every: 4s}\n", "performance.every"),
        ("performance: {every: soon}\n", "performance.every"),
        ("captureBuffer: -1\n", "captureBuffer"),
        ("ui: {activity: {session_id: X-Session-ID}}\n", "ui.activity.session_id"),
        ("ui: {theme: dark}\n", "ui.theme"),
    ):
        path = tmp_path / "config.yaml"
        path.write_text(text + models)
        with pytest.raises(Invalid) as caught:
            io.load(path)
        assert [d.field for d in caught.value.diagnostics] == [field], text
        assert caught.value.diagnostics[0].line == 1
    path.write_text("ui: null\nperformance: {every: 1m30s}\nstore: null\ncaptureBuffer: 0\n" + models)
    resolved, _ = io.load(path)
    assert resolved.performance_every == 90.0 and resolved.capture_mb == 0 and resolved.store_path == ""
