"""`filters.setParamsByID`, as llama-swap runs it: each key names the model (its own id or a new
alias), and a request that names it gets those params set, on the model's one process."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from halogen.diagnostics import Invalid
from halogen.llamaswap import io

from .harness import Site, metric, serving


def sent(site: Site, model_id: str) -> dict[str, Any]:
    """The body the model's fake upstream received last."""
    body: dict[str, Any] = site.fakes[model_id].events("request")[-1]["body"]
    return body


async def test_a_set_params_by_id_key_is_an_alias_whose_requests_get_its_params(tmp_path: Path) -> None:
    site = Site(tmp_path)
    site.fake(
        "qwen",
        filters={
            "setParams": {"temperature": 0.7, "reasoning_effort": "medium"},
            "setParamsByID": {
                "${MODEL_ID}": {"reasoning_effort": "low"},
                "qwen-think": {
                    "reasoning_effort": "high",
                    "model": "never-set",
                    "chat_template_kwargs.enable_thinking": True,
                },
            },
        },
    )
    async with serving(site.write()) as proxy:
        async with await proxy.chat("qwen-think", chat_template_kwargs={"keep": 1}) as response:
            assert response.status == 200
        # applyFilters (internal/server/filters.go): setParams, then the requested id's params
        # over them; the model name as sent; a dotted key sets a field inside an object.
        assert sent(site, "qwen") == {
            "model": "qwen-think",
            "messages": [{"role": "user", "content": "hi"}],
            "chat_template_kwargs": {"keep": 1, "enable_thinking": True},
            "temperature": 0.7,
            "reasoning_effort": "high",
        }
        async with await proxy.chat("qwen") as response:
            assert response.status == 200
        assert sent(site, "qwen")["reasoning_effort"] == "low"  # the ${MODEL_ID} key
        async with proxy.client.post(
            "/api/chat",
            json={
                "model": "qwen-think:latest",
                "messages": [{"role": "user", "content": "hi"}],
                "stream": False,
            },
        ) as response:
            assert response.status == 200
        assert sent(site, "qwen")["reasoning_effort"] == "high"
        text = await proxy.metrics()
    # One process served every id: started once, every request counted under the model.
    assert site.fakes["qwen"].starts() == 1
    assert metric(text, "halogen_requests_total") == {"qwen": "3"}


async def test_set_params_by_id_aliases_are_listed_like_aliases(tmp_path: Path) -> None:
    site = Site(tmp_path)
    site.fake("qwen", filters={"setParamsByID": {"qwen-think": {"a": 1}}})
    site.top["includeAliasesInList"] = True
    async with serving(site.write()) as proxy, proxy.client.get("/v1/models") as response:
        ids = [row["id"] for row in (await response.json())["data"]]
    assert ids == ["qwen", "qwen-think"]


@pytest.mark.parametrize(
    ("models", "says"),
    [
        (
            {"a": {"filters": {"setParamsByID": {"b": {"x": 1}}}}, "b": {}},
            "key 'b' is already used by model 'b'",
        ),
        (
            {"a": {"filters": {"setParamsByID": {"v": {"x": 1}}}}, "b": {"aliases": ["v"]}},
            "alias 'v' is already used by model 'a'",
        ),
        (
            {"a": {"filters": {"setParamsByID": {"${MODEL_ID}-x": {"x": 1}, "a-x": {"y": 1}}}}},
            "two keys resolve to 'a-x'",
        ),
    ],
)
def test_a_set_params_by_id_key_that_names_another_model_is_refused(
    tmp_path: Path, models: dict[str, dict[str, Any]], says: str
) -> None:
    site = Site(tmp_path)
    for model_id, keys in models.items():
        site.fake(model_id, **keys)
    with pytest.raises(Invalid) as raised:
        io.load(site.write())
    assert says in str(raised.value)
