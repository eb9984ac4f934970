"""A model whose file is not on disk (yet) gets a 503 that names the file, and Ollama's /api/pull
says what is on disk; the pull Job, not the runtime, fetches models."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from halogen.hub.download import _write_marker
from halogen.modelfiles import FileSource

from .harness import Site, serving


def _verified_file(folder: Path, data: bytes = b"GGUF fake weights") -> tuple[Path, str]:
    path = folder / "org" / "repo" / "m.gguf"
    path.parent.mkdir(parents=True)
    path.write_bytes(data)
    digest = hashlib.sha256(data).hexdigest()
    _write_marker(path, digest, None, FileSource("org/repo/m.gguf", "org/repo", "m.gguf", "main", ("m",)))
    return path, digest


async def test_a_model_whose_file_is_missing_gets_503_with_retry_after_and_starts_nothing(
    tmp_path: Path,
) -> None:
    site = Site(tmp_path)
    missing = tmp_path / "models" / "org" / "repo" / "m.gguf"
    fake = site.fake("m", "-m", str(missing))
    other = site.fake("other")
    async with serving(site.write()) as proxy:
        assert await proxy.served_by("other") == "other"
        for path, body in (
            ("/v1/chat/completions", {"model": "m", "messages": [{"role": "user", "content": "hi"}]}),
            ("/api/chat", {"model": "m", "messages": [{"role": "user", "content": "hi"}]}),
            ("/api/generate", {"model": "m"}),  # Ollama's load request
        ):
            async with proxy.client.post(path, json=body) as response:
                answer = await response.json()
                assert response.status == 503, answer
                assert response.headers["Retry-After"] == "30"
                message = answer["error"] if path.startswith("/api/") else answer["error"]["message"]
                assert str(missing) in message and "the cluster fetches models from the site" in message
        assert fake.starts() == 0
        assert await proxy.running() == {"other": "ready"}  # nothing was stopped to make room for it
        missing.parent.mkdir(parents=True)
        missing.write_bytes(b"GGUF")  # the pull Job has placed it
        assert await proxy.served_by("m") == "m"
        assert other.starts() == 1


async def test_a_split_gguf_needs_every_part(tmp_path: Path) -> None:
    site = Site(tmp_path)
    first = tmp_path / "big-00001-of-00002.gguf"
    first.write_bytes(b"GGUF")
    site.fake("m", "-m", str(first))
    async with serving(site.write()) as proxy, await proxy.chat("m") as response:
        assert response.status == 503
        assert str(tmp_path / "big-00002-of-00002.gguf") in (await response.json())["error"]["message"]


async def test_ollama_pull_of_a_present_verified_model_streams_success(tmp_path: Path) -> None:
    site = Site(tmp_path)
    path, digest = _verified_file(tmp_path / "models")
    site.fake("m", "-m", str(path))
    async with serving(site.write()) as proxy:
        async with proxy.client.post("/api/pull", json={"model": "m"}) as response:
            assert response.status == 200 and response.content_type == "application/x-ndjson"
            events = [json.loads(line) for line in (await response.text()).splitlines()]
        assert events[0] == {"status": "pulling manifest"}
        assert events[1] == {
            "status": f"pulling {digest[:12]}",
            "digest": f"sha256:{digest}",
            "total": path.stat().st_size,
            "completed": path.stat().st_size,
        }
        assert [e["status"] for e in events[2:]] == ["verifying sha256 digest", "writing manifest", "success"]
        async with proxy.client.post("/api/pull", json={"model": "m", "stream": False}) as response:
            assert response.status == 200 and await response.json() == {"status": "success"}


async def test_ollama_pull_of_a_missing_or_unverified_file_says_the_cluster_fetches_it(
    tmp_path: Path,
) -> None:
    site = Site(tmp_path)
    path, _ = _verified_file(tmp_path / "models")
    path.write_bytes(b"GGUF changed by hand")  # the marker no longer vouches for it
    site.fake("changed", "-m", str(path))
    site.fake("missing", "-m", str(tmp_path / "nowhere.gguf"))
    async with serving(site.write()) as proxy:
        async with proxy.client.post("/api/pull", json={"model": "missing"}) as response:
            assert response.status == 200
            events = [json.loads(line) for line in (await response.text()).splitlines()]
        assert events[0] == {"status": "pulling manifest"}
        assert "nowhere.gguf is not on disk" in events[-1]["error"]
        assert "the cluster fetches models from the site" in events[-1]["error"]
        async with proxy.client.post("/api/pull", json={"model": "changed", "stream": False}) as response:
            assert response.status == 503
            assert "not verified by `halogen pull`" in (await response.json())["error"]
        async with proxy.client.post("/api/pull", json={"model": "undeclared"}) as response:
            assert response.status == 404
