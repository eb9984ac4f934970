"""`peers`: another `halogen serve`'s models through this one, as llama-swap's peers
(internal/router/peer.go, internal/config/peer.go): `<peer>/<model>`, or the bare name when one
peer alone offers it and no local model has it; the peer's `apiKey` and filters; 502 naming a
peer that is down."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from halogen.diagnostics import Invalid
from halogen.llamaswap import io

from .harness import Fake, Site, eventually, fake_process, free_ports, serving


def answers(port: int) -> bool:
    """Whether something listens on `port` (the fake records its start before it binds)."""
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def far_site(tmp_path: Path, *models: str) -> Site:
    """The peer's own config, in a folder of its own, with a fake for each of `models`."""
    (tmp_path / "far").mkdir()
    site = Site(tmp_path / "far")
    for model in models:
        site.fake(model)
    return site


def near_site(tmp_path: Path, url: str, offered: list[str], *local: str, **peer: Any) -> Site:
    """This server's config: a fake for each of `local`, and the peer `box2` at `url` offering
    `offered`, with `peer`'s other keys."""
    near = Site(tmp_path)
    for model in local:
        near.fake(model)
    near.top["peers"] = {"box2": {"proxy": url, "models": offered, **peer}}
    return near


@contextlib.asynccontextmanager
async def peer_fake(tmp_path: Path, model: str) -> AsyncIterator[tuple[Fake, str]]:
    """A fake llama-server in a peer's place, offering `model`, once it listens; and its URL."""
    (port,) = free_ports(1)
    fake = Fake(model, port, tmp_path / "peer.events")
    with fake_process(port, model, fake.record):
        await eventually(lambda: answers(port), "the peer's server to listen")
        yield fake, f"http://127.0.0.1:{port}"


async def answer(response: Any) -> dict[str, Any]:
    async with response:
        body: dict[str, Any] = await response.json()
        assert response.status == 200, body
        return body


async def test_a_second_halogen_serve_is_reached_by_qualified_and_bare_ids_with_its_key(
    tmp_path: Path,
) -> None:
    far = far_site(tmp_path, "qwen", "shared")
    far.top["apiKeys"] = ["sk-peer"]
    async with serving(far.write()) as peer:
        near = near_site(
            tmp_path,
            peer.server.url,
            ["qwen", "shared"],
            "shared",
            apiKey="sk-peer",
            filters={"setParams": {"top_k": 3}, "stripParams": "seed"},
        )
        async with serving(near.write()) as proxy:
            for name in ("box2/qwen", "qwen"):
                body = await answer(await proxy.chat(name, seed=1))
                assert body["served_by"] == "qwen"
                # The peer's own id, its filters; the key the peer checks.
                assert body["echo"]["body"]["model"] == "qwen"
                assert body["echo"]["body"]["top_k"] == 3 and "seed" not in body["echo"]["body"]
            # A local model wins over a bare peer name; the qualified name reaches the peer.
            assert (await answer(await proxy.chat("shared")))["echo"]["headers"].get("x-api-key") is None
            assert near.fakes["shared"].starts() == 1
            assert far.fakes["shared"].starts() == 0
            await answer(await proxy.chat("box2/shared"))
            assert far.fakes["shared"].starts() == 1
            async with proxy.client.get("/v1/models") as response:
                rows = {row["id"]: row for row in (await response.json())["data"]}
            async with proxy.client.get("/v1/models/box2/qwen") as response:
                one = await answer(response)
    assert {"box2/qwen", "box2/shared", "shared"} <= set(rows)
    assert rows["box2/qwen"]["meta"] == {"llamaswap": {"type": "peer", "peerID": "box2"}}
    assert one["id"] == "box2/qwen" and one["name"] == "box2: qwen"


async def test_a_name_two_peers_offer_is_reached_only_qualified(tmp_path: Path) -> None:
    a, b = Site(tmp_path / "a"), Site(tmp_path / "b")
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a.fake("x")
    b.fake("x")
    async with serving(a.write()) as pa, serving(b.write()) as pb:
        near = Site(tmp_path)
        near.top["peers"] = {
            "a": {"proxy": pa.server.url, "models": ["x"]},
            "b": {"proxy": pb.server.url, "models": ["x"]},
        }
        near.fake("local")
        async with serving(near.write()) as proxy:
            async with await proxy.chat("x") as response:
                assert response.status == 404
            assert (await answer(await proxy.chat("b/x")))["served_by"] == "x"
    assert b.fakes["x"].starts() == 1 and a.fakes["x"].starts() == 0


async def test_a_spillover_selector_spills_from_a_busy_local_model_to_a_peers(tmp_path: Path) -> None:
    # strategySpillover (internal/server/selector.go): a peer's target is active while it holds
    # reservations, else cold; the request goes to the peer under the peer's own id.
    far = far_site(tmp_path, "big")
    async with serving(far.write()) as peer:
        near = near_site(tmp_path, peer.server.url, ["big"], "small")
        near.top["selectors"] = {"auto": {"strategy": "spillover", "targets": ["small", "box2/big"]}}
        async with serving(near.write()) as proxy:
            assert (await answer(await proxy.chat("auto")))["served_by"] == "small"
            slow = {"X-Fake-Chunks": "4", "X-Fake-Chunk-Delay": "0.5"}
            async with await proxy.chat("auto", headers=slow, stream=True) as busy:
                assert busy.status == 200
                spilled = await answer(await proxy.chat("auto"))
                await busy.read()
            assert spilled["served_by"] == "big" and spilled["echo"]["body"]["model"] == "big"
            # Both reservations were given back: the next request is the local model's again.
            assert (await answer(await proxy.chat("auto")))["served_by"] == "small"
    assert far.fakes["big"].starts() == 1


async def test_a_peer_that_was_stopped_is_a_502_naming_it_within_its_connect_timeout(tmp_path: Path) -> None:
    far = far_site(tmp_path, "m")
    async with serving(far.write()) as peer:
        url = peer.server.url
    near = Site(tmp_path)
    near.fake("local")
    near.top["peers"] = {"gone": {"proxy": url, "models": ["m"], "timeouts": {"connect": 2}}}
    async with serving(near.write()) as proxy:
        began = asyncio.get_running_loop().time()
        async with await proxy.chat("gone/m") as response:
            assert response.status == 502
            message = (await response.json())["error"]["message"]
        assert asyncio.get_running_loop().time() - began < 2 + 5
    assert "peer 'gone' did not answer" in message


def test_a_qualified_peer_name_that_is_a_local_alias_is_refused(tmp_path: Path) -> None:
    site = Site(tmp_path)
    site.fake("m", aliases=["box2/qwen"])
    site.top["peers"] = {"box2": {"proxy": "http://127.0.0.1:1", "models": ["qwen"]}}
    with pytest.raises(Invalid) as raised:
        io.load(site.write())
    assert "'box2/qwen' is also a local model id or alias" in str(raised.value)


async def test_ollama_clients_see_and_reach_a_peers_models(tmp_path: Path) -> None:
    far = far_site(tmp_path, "qwen")
    async with serving(far.write()) as peer:
        near = near_site(tmp_path, peer.server.url, ["qwen"], "local")
        async with serving(near.write()) as proxy:
            async with proxy.client.get("/api/tags") as response:
                names = [m["name"] for m in (await response.json())["models"]]
            assert names == ["local:latest", "box2/qwen:latest"]
            for name in ("box2/qwen", "qwen:latest"):
                async with proxy.client.post("/api/show", json={"model": name}) as response:
                    assert response.status == 200
                    shown = await response.json()
                assert shown["capabilities"] == ["completion"] and shown["details"]["format"] == ""
            for name in ("box2/qwen", "qwen:latest"):
                chat = {"model": name, "messages": [{"role": "user", "content": "hi"}], "stream": False}
                async with proxy.client.post("/api/chat", json=chat) as response:
                    assert response.status == 200
                    said = await response.json()
                assert said["model"] == name and said["message"]["content"] == "hello from qwen"
                assert far.fakes["qwen"].events("request")[-1]["body"]["model"] == "qwen"
            chat = {"model": "box2/qwen", "messages": [{"role": "user", "content": "hi"}]}  # streams
            async with proxy.client.post("/api/chat", json=chat) as response:
                lines = [line for line in (await response.read()).splitlines() if line]
            assert b'"done":true' in lines[-1].replace(b" ", b"")
            async with proxy.client.post(
                "/api/chat", json={"model": "box2/qwen", "messages": []}
            ) as response:
                assert response.status == 501


async def test_upstream_paths_reach_a_peers_server_with_its_model_renamed_where_sent(tmp_path: Path) -> None:
    # handleUpstream (internal/server/api.go) then the peer router's ReplaceRequestModel
    # (internal/router/peer.go, internal/swaputil/http.go): the path after the model goes to the
    # peer; where the request itself names the model as asked (a GET's query, a JSON body), that
    # name becomes the peer's own. A request that names none, or another, goes as sent.
    async with peer_fake(tmp_path, "qwen") as (fake, url):
        near = near_site(tmp_path, url, ["qwen"], "local", apiKey="sk-p")
        async with serving(near.write()) as proxy:
            for query, sent in (("x=1&model=box2/qwen", "x=1&model=qwen"), ("x=1", "x=1")):
                async with proxy.client.get(f"/upstream/box2/qwen/props?{query}") as response:
                    assert response.status == 200
                seen = fake.events("request")[-1]
                assert (seen["method"], seen["path"], seen["query"]) == ("GET", "/props", sent)
                assert seen["headers"]["authorization"] == "Bearer sk-p"
            async with proxy.client.get("/upstream/qwen/props?x=1&model=qwen") as response:
                assert response.status == 200
            assert fake.events("request")[-1]["query"] == "x=1&model=qwen"  # the peer's own name
            for named, sent_name in (("box2/qwen", "qwen"), ("something-else", "something-else")):
                body = {"model": named, "messages": [{"role": "user", "content": "hi"}]}
                async with proxy.client.post(
                    "/upstream/box2/qwen/v1/chat/completions", json=body
                ) as response:
                    assert response.status == 200
                seen = fake.events("request")[-1]
                assert seen["path"] == "/v1/chat/completions" and seen["body"]["model"] == sent_name
            async with proxy.client.get("/upstream/box2/nothing/props") as response:
                assert response.status == 404
    assert near.fakes["local"].starts() == 0


async def test_forms_and_get_routes_reach_a_peers_model_under_the_peers_name(tmp_path: Path) -> None:
    # localPeerHandler (internal/server/server.go) hands every model route to the peer router,
    # forms and GETs too, and the peer router renames the model where the request carries it
    # (ReplaceRequestModel, internal/swaputil/http.go). A form was a 404 here before.
    async with peer_fake(tmp_path, "whisper") as (fake, url):
        near = near_site(tmp_path, url, ["whisper"])
        async with serving(near.write()) as proxy:
            form = aiohttp.FormData()
            form.add_field("file", b"RIFF\x00\x01binary", filename="a.wav", content_type="audio/wav")
            form.add_field("model", "box2/whisper")
            form.add_field("language", "en")
            await answer(await proxy.client.post("/v1/audio/transcriptions", data=form))
            seen = fake.events("request")[-1]
            assert seen["path"] == "/v1/audio/transcriptions"
            assert 'name="model"\r\n\r\nwhisper\r\n' in seen["raw"]
            assert 'name="language"\r\n\r\nen\r\n' in seen["raw"] and "RIFF\x00\x01binary" in seen["raw"]
            await answer(await proxy.client.get("/v1/audio/voices?model=box2/whisper&lang=en"))
            seen = fake.events("request")[-1]
            assert (seen["method"], seen["path"], seen["query"]) == (
                "GET",
                "/v1/audio/voices",
                "lang=en&model=whisper",
            )
            await answer(await proxy.client.post("/v/chat/completions", json={"model": "whisper"}))
            seen = fake.events("request")[-1]
            assert (seen["path"], seen["body"]) == ("/chat/completions", {"model": "whisper"})
