"""`halogen smoke` against `halogen serve` itself, its models fake llama-servers: the kind of
each model read from serve's own /v1/models and /api/show, and the load timed by /running."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from tests.runtime.harness import Site, serving

from .run import smoke


async def test_kinds_come_from_serves_listing_and_the_load_from_running(tmp_path: Path) -> None:
    site = Site(tmp_path)
    site.fake("talker", "--health-delay", "0.3")
    site.fake("ranker", capabilities={"reranker": True})
    site.fake("embedder", metadata={"capabilities": ["embedding"]})
    async with serving(site.write()) as proxy:
        url = str(proxy.server.url).rstrip("/")
        first = await smoke(url, "--format", "json")
        again = await smoke(url, "talker")
    assert first.code == 0, first.both
    rows = {m["id"]: m for m in json.loads(first.out)["models"]}
    assert {m: r["kind"] for m, r in rows.items()} == {
        "embedder": "embedding",
        "ranker": "reranker",
        "talker": "chat",
    }
    talker = rows["talker"]
    # The fake answers /health 200 0.3 s after it starts: /running says ready no sooner, and the
    # answer's headers come later still. /running is asked every 50 ms: on a loaded machine the
    # answer may be complete before an ask sees the model ready, and the load is then timed to
    # the first byte, which the report says.
    assert talker["loadFrom"] in ("running", "first-byte") and talker["loadSeconds"] >= 0.3
    assert talker["speedFrom"] == "timings"  # the fake's prompt_n and prompt_ms
    assert [e["path"] for e in site.fakes["ranker"].events("request")] == ["/v1/rerank"]
    assert [e["path"] for e in site.fakes["embedder"].events("request")] == ["/v1/embeddings"]
    # Tested last, so still loaded when named alone: no load to time.
    assert again.code == 0, again.both
    (row,) = [line for line in again.out.splitlines() if line.startswith("talker")]
    assert row.split()[:3] == ["talker", "chat", "loaded"]


async def test_config_version_is_the_one_serve_reports(tmp_path: Path) -> None:
    """What the post-deploy Job does (halogen/compiler/render/smoke.py): wait for serve to
    report the config it should run, the sha256 of the file's bytes, then test; a version serve
    does not run is a failure once --wait is over, naming what serve reported instead."""
    site = Site(tmp_path)
    site.fake("talker")
    config = site.write()
    running = hashlib.sha256(config.read_bytes()).hexdigest()
    other = hashlib.sha256(b"another config").hexdigest()
    async with serving(config) as proxy:
        url = str(proxy.server.url).rstrip("/")
        waited = await smoke(url, "--config-version", running, "--wait", "5")
        asked = len(site.fakes["talker"].events("request"))
        refused = await smoke(url, "--config-version", other, "--wait", "1")
    assert waited.code == 0, waited.both
    assert refused.code == 1, refused.both
    assert other[:12] in refused.both and running[:12] in refused.both, refused.both
    # The model was used by the first run, and not at all against the wrong config.
    assert asked > 0 and len(site.fakes["talker"].events("request")) == asked
