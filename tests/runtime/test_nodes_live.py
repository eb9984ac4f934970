"""Two nodes of one site, live: `halogen build` writes out/nodes/n-a/ and out/nodes/n-b/, and two
`halogen serve` processes run them on this machine, each on the port its node says (the other
node's config names it as a peer). Every model of the site answers from either node, through the
official `openai`, `ollama` and `anthropic` clients: SmolLM2 on n-a for real, a fake
llama-server on each node besides. With n-b's proxy stopped, n-a answers a request for n-b's
model with a 502 that names n-b, and still serves its own."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import anthropic
import ollama
import openai
import pytest

from halogen.llamaswap.config import Timeouts

from .nodes_site import NodesSite, build_site, fake_model, models_folder
from .processes import Serving, halogen_serve

pytestmark = [pytest.mark.real, pytest.mark.slow]

NODES = ["n-a", "n-b"]
# Which node runs each model, and what a fake's answer says (fake_upstream.py: "hello from NAME").
PLACED = {"smol": "n-a", "echo-a": "n-a", "echo-b": "n-b"}
FAKES = {"echo-a", "echo-b"}


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory, smollm2_gguf: Path) -> NodesSite:
    root = tmp_path_factory.mktemp("nodes")
    models = models_folder(root / "models", smollm2_gguf)
    files = {
        "smol": {"file": smollm2_gguf.name, "contextSize": 1024, "node": "n-a", "args": ["--jinja"]},
        **{name: fake_model(PLACED[name], name) for name in sorted(FAKES)},
    }
    return build_site(root / "site", models, NODES, files)


@dataclass
class Nodes:
    site: NodesSite
    serving: dict[str, Serving]

    def openai(self, node: str) -> openai.OpenAI:
        return openai.OpenAI(
            base_url=f"{self.serving[node].url}/v1", api_key="unused", timeout=120, max_retries=0
        )


@pytest.fixture(scope="module")
def nodes(site: NodesSite, llama_server: Path) -> Iterator[Nodes]:
    extra = ("--no-watch", "--models-dir", str(site.models_dir), "--llama-server", str(llama_server))
    with contextlib.ExitStack() as stack:
        serving = {
            node: stack.enter_context(
                halogen_serve(
                    site.config(node), site.root.parent / f"serve-{node}.log", *extra, port=spec.port
                )
            )
            for node, spec in site.nodes.items()
        }
        yield Nodes(site, serving)


def test_each_node_runs_its_own_models_and_names_the_other_as_a_peer(site: NodesSite) -> None:
    for node in NODES:
        config = site.compiled(node)
        assert set(config["models"]) == {m for m, n in PLACED.items() if n == node}
        (other,) = set(NODES) - {node}
        assert config["peers"][other]["proxy"] == site.nodes[other].url
        assert set(config["peers"][other]["models"]) == {m for m, n in PLACED.items() if n == other}


def listed_as(model: str, node: str) -> str:
    """How `node` lists `model`: by its id when it runs it, else qualified by the peer that does
    (llama-swap lists a peer's models as `<peer>/<model>`); both names reach it."""
    return model if PLACED[model] == node else f"{PLACED[model]}/{model}"


@pytest.mark.parametrize("node", NODES)
def test_every_model_answers_the_openai_client_from_either_node(nodes: Nodes, node: str) -> None:
    client = nodes.openai(node)
    assert {m.id for m in client.models.list()} == {listed_as(m, node) for m in PLACED}
    for model in sorted(PLACED):
        answer = client.chat.completions.create(
            model=model, messages=[{"role": "user", "content": "Say hi."}], max_tokens=8, temperature=0
        )
        content = answer.choices[0].message.content
        if model in FAKES:
            assert content == f"hello from {model}"  # the fake on the node that runs it
        else:
            assert content and answer.usage is not None and answer.usage.completion_tokens > 0


@pytest.mark.parametrize("node", NODES)
def test_every_model_answers_the_ollama_client_from_either_node(nodes: Nodes, node: str) -> None:
    client = ollama.Client(host=nodes.serving[node].url, timeout=120)
    listed = {m.model for m in client.list().models}
    for model in sorted(PLACED):
        assert f"{listed_as(model, node)}:latest" in listed, listed
        said = client.chat(
            model=model, messages=[{"role": "user", "content": "Say hi."}], options={"num_predict": 8}
        )
        assert said.message.content
        if model in FAKES:
            assert said.message.content == f"hello from {model}"


def test_the_real_model_answers_the_anthropic_client_through_the_other_node(nodes: Nodes) -> None:
    client = anthropic.Anthropic(
        base_url=nodes.serving["n-b"].url, api_key="unused", timeout=120, max_retries=0
    )
    message = client.messages.create(
        model="smol", max_tokens=8, messages=[{"role": "user", "content": "Say hi."}]
    )
    assert message.role == "assistant" and message.content and message.usage.output_tokens > 0


def test_a_node_that_is_down_is_a_502_naming_it_within_the_connect_timeout(nodes: Nodes) -> None:
    # Last in the module: it stops n-b's proxy, as a node that went away. The peer's client
    # (forward/target.py) has the peer's connect timeout, llama-swap's default here.
    assert nodes.serving["n-b"].stop() == 0
    client = nodes.openai("n-a")
    started = time.monotonic()
    with pytest.raises(openai.APIStatusError) as failure:
        client.chat.completions.create(
            model="echo-b", messages=[{"role": "user", "content": "hi"}], max_tokens=2
        )
    waited = time.monotonic() - started
    assert failure.value.status_code == 502
    message = failure.value.response.json()["error"]["message"]
    assert message.startswith("peer 'n-b' did not answer"), message
    assert waited < Timeouts().connect
    # n-a's own models are not held up by it.
    answer = client.chat.completions.create(model="echo-a", messages=[{"role": "user", "content": "hi"}])
    assert answer.choices[0].message.content == "hello from echo-a"
