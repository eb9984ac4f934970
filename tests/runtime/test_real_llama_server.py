"""The real path: `halogen serve` swapping real llama-server processes on the SmolLM2 GGUF,
seen through its routes, the official OpenAI client and the process table."""

from __future__ import annotations

import json
import os
import signal
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
import yaml

from .harness import PATIENCE, free_port_run, metric, process_exists, until
from .processes import Serving, children, halogen_serve, state

pytestmark = pytest.mark.real

TTL = 2


@pytest.fixture
def config(tmp_path: Path, llama_server: Path, smollm2_gguf: Path) -> Path:
    cmd = f"{llama_server} --port ${{PORT}} --host 127.0.0.1 -m {smollm2_gguf} -c 512 -t 1 -ngl 0"
    data = {
        "startPort": free_port_run(2),
        "healthCheckTimeout": 60,
        "models": {"smol-a": {"cmd": cmd}, "smol-b": {"cmd": cmd, "ttl": TTL}},
        "groups": {"chat": {"swap": True, "exclusive": True, "members": ["smol-a", "smol-b"]}},
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def running(url: str) -> dict[str, str]:
    with urllib.request.urlopen(url + "/running", timeout=PATIENCE) as response:
        return {row["model"]: row["state"] for row in json.load(response)["running"]}


@pytest.fixture
def served(config: Path) -> Iterator[Serving]:
    with halogen_serve(config, config.with_name("serve.log"), "--no-watch") as serving:
        yield serving


def test_two_ids_on_one_gguf_swap_in_their_group_and_the_ttl_unloads(
    served: Serving,
) -> None:
    process, url = served.process, served.url
    client = openai.OpenAI(base_url=url + "/v1", api_key="unused", timeout=PATIENCE * 4)

    stream = client.chat.completions.create(
        model="smol-a",
        messages=[{"role": "user", "content": "Say hello."}],
        max_tokens=8,
        temperature=0,
        stream=True,
    )
    pieces = [chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices]
    assert len(pieces) > 1 and "".join(pieces).strip()
    assert running(url) == {"smol-a": "ready"}
    (first,) = children(process.pid, "llama-server")

    answer = client.chat.completions.create(
        model="smol-b", messages=[{"role": "user", "content": "Hi"}], max_tokens=4
    )
    assert answer.choices[0].message.content is not None
    assert answer.usage is not None and answer.usage.completion_tokens > 0
    assert running(url) == {"smol-b": "ready"}
    (second,) = children(process.pid, "llama-server")
    assert second != first and not process_exists(first)

    until(lambda: not running(url), "the ttl unloaded smol-b", interval=0.1)
    assert children(process.pid, "llama-server") == []

    with urllib.request.urlopen(url + "/metrics", timeout=PATIENCE) as response:
        metrics = response.read().decode()
    assert metric(metrics, "halogen_swaps_total")["smol-a"] == "1"
    assert metric(metrics, "halogen_generated_tokens_total")["smol-b"] != "0"

    assert served.stop() == 0, served.output()


def test_a_client_that_hangs_up_mid_stream_makes_llama_server_cancel_the_generation(
    served: Serving,
) -> None:
    url = served.url
    body = {
        "model": "smol-a",
        "messages": [{"role": "user", "content": "Write a long story."}],
        "max_tokens": 400,
        "ignore_eos": True,
        "stream": True,
    }
    with httpx.stream("POST", url + "/v1/chat/completions", json=body, timeout=PATIENCE * 4) as response:
        assert response.status_code == 200
        next(response.iter_lines())

    # llama-server logs the cancellation of a task whose client went away; a generation that
    # ran to its end would release the slot without it.
    def logs() -> str:
        return httpx.get(url + "/logs", timeout=PATIENCE).text

    def cancelled() -> bool:
        text = logs()
        return "[smol-a]" in text and "cancel task" in text

    until(cancelled, lambda: logs()[-3000:], interval=0.1)


def test_a_real_llama_server_dies_with_a_proxy_killed_with_sigkill(served: Serving) -> None:
    process, url = served.process, served.url
    request = urllib.request.Request(
        url + "/v1/chat/completions",
        json.dumps(
            {"model": "smol-a", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2}
        ).encode(),
        {"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=PATIENCE * 4) as response:
        assert response.status == 200
    (server,) = children(process.pid, "llama-server")
    process.kill()
    process.wait(PATIENCE)
    try:
        # Gone, or a zombie the new parent has not reaped yet: either way it holds no port.
        until(lambda: state(server) in (None, "Z"), "llama-server died with its proxy", patience=2)
    finally:
        if state(server) not in (None, "Z"):
            os.kill(server, signal.SIGKILL)
