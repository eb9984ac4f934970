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
