"""A model whose llama-server checks a key gets it from the proxy however its command spells it:
`--api_key` (read as `--api-key`) or `--api-key-file`, as common/arg.cpp reads them."""

from __future__ import annotations

from pathlib import Path

import pytest

from .harness import Site, serving


@pytest.mark.parametrize("spelling", ["--api_key", "--api-key-file"])
async def test_the_model_answers_whatever_spelling_gives_its_key(tmp_path: Path, spelling: str) -> None:
    site = Site(tmp_path)
    if spelling == "--api-key-file":
        keys = tmp_path / "keys.txt"
        keys.write_text("# the model's key\n\nsk-upstream\nsk-second\n")
        fake = site.fake("m", spelling, str(keys))
    else:
        fake = site.fake("m", spelling, "sk-upstream")
    site.top["apiKeys"] = ["sk-client"]
    client = {"Authorization": "Bearer sk-client"}
    async with (
        serving(site.write()) as proxy,
        proxy.client.post(
            "/v1/chat/completions",
            json={"model": "m", "messages": [{"role": "user", "content": "hi"}]},
            headers=client,
        ) as response,
    ):
        assert response.status == 200, await response.text()
    (seen,) = [event["headers"] for event in fake.events("request")]
    assert seen.get("authorization") == "Bearer sk-upstream"
