"""llama-swap's UI API with the real llama-server on SmolLM2, through the official OpenAI client:
a chat shows as `activity` with its token counts, the model's start as `modelStatus`, and cancelling
a streamed answer stops llama-server's generation."""

from __future__ import annotations

import json
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import yaml

from .harness import PATIENCE, free_port_run, until
from .processes import Serving, halogen_serve

pytestmark = pytest.mark.real


class EventLog:
    """/api/events read on a thread of its own, every envelope kept (data parsed)."""

    def __init__(self, url: str) -> None:
        self.seen: list[tuple[str, Any]] = []
        self._thread = threading.Thread(target=self._read, args=(url,), daemon=True)
        self._thread.start()

    def _read(self, url: str) -> None:
        try:
            with httpx.stream("GET", url + "/api/events", timeout=None) as response:
                for line in response.iter_lines():
                    if line.startswith("data:"):
                        envelope = json.loads(line[5:])
                        self.seen.append((envelope["type"], json.loads(envelope["data"])))
        except httpx.HTTPError:
            pass  # the server stopped

    def of(self, kind: str) -> list[Any]:
        return [data for got, data in list(self.seen) if got == kind]


def get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=PATIENCE) as response:
        return json.loads(response.read())


@pytest.fixture
def served(tmp_path: Path, llama_server: Path, smollm2_gguf: Path) -> Iterator[Serving]:
    cmd = f"{llama_server} --port ${{PORT}} --host 127.0.0.1 -m {smollm2_gguf} -c 2048 -t 1 -ngl 0"
    data = {"startPort": free_port_run(1), "healthCheckTimeout": 60, "models": {"smol": {"cmd": cmd}}}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    with halogen_serve(path, tmp_path / "serve.log", "--no-watch") as serving:
        yield serving


def test_a_chat_is_activity_with_tokens_and_a_cancel_stops_llama_servers_generation(served: Serving) -> None:
    url = served.url
    events = EventLog(url)
    until(lambda: events.of("inflight"), "the event stream's first messages")
    client = openai.OpenAI(base_url=url + "/v1", api_key="unused", timeout=PATIENCE * 4)

    answer = client.chat.completions.create(
        model="smol", messages=[{"role": "user", "content": "Say hello."}], max_tokens=8, temperature=0
    )
    assert answer.usage is not None
    until(lambda: events.of("activity"), "an activity event")
    (announced,) = events.of("activity")
    row = get(url + "/api/metrics/activity")["data"][0]
    assert row["id"] == announced["id"] and row["model"] == "smol" and row["resp_status_code"] == 200
    assert row["tokens"]["input_tokens"] == answer.usage.prompt_tokens
    assert row["tokens"]["output_tokens"] == answer.usage.completion_tokens
    assert row["tokens"]["tokens_per_second"] > 0 and row["tokens"]["prompt_per_second"] > 0
    states = [next(m["state"] for m in models if m["id"] == "smol") for models in events.of("modelStatus")]
    assert states[0] == "stopped" and "starting" in states and states[-1] == "ready"

    # A long answer, cancelled from the UI after its first tokens.
    stream = client.chat.completions.create(
        model="smol",
        messages=[{"role": "user", "content": "Count from one to one thousand in words."}],
        max_tokens=1500,
        temperature=0,
        stream=True,
        extra_body={"ignore_eos": True},
    )
    pieces = 0
    cancelled = False
    try:
        for _chunk in stream:
            pieces += 1
            if pieces == 3:
                flight = events.of("inflight")
                gone = {d["id"] for d in flight if d["operation"] == "remove"}
                (streaming,) = {d["request"]["id"] for d in flight if d["operation"] == "upsert"} - gone
                request = urllib.request.Request(url + f"/api/inflight/{streaming}/cancel", method="POST")
                with urllib.request.urlopen(request, timeout=PATIENCE) as response:
                    assert json.loads(response.read()) == {"msg": "ok"}
                cancelled = True
    except (openai.APIError, httpx.HTTPError):
        pass  # the answer was cut off
    assert cancelled and pieces < 1500

    def idle() -> bool:
        slots = get(url + "/upstream/smol/slots")
        return not any(slot["is_processing"] for slot in slots)

    until(idle, "llama-server's slot went idle", interval=0.1)
    logs = urllib.request.urlopen(url + "/logs", timeout=PATIENCE).read().decode()
    assert "cancel task" in logs  # llama-server's own line (server-queue.cpp) when its client hangs up
    until(lambda: {"operation": "remove", "id": streaming} in events.of("inflight"), "the row removed")
    rows = get(url + "/api/metrics/activity")["data"]
    newest = next(row for row in rows if row["req_path"] == "/v1/chat/completions")
    assert newest["resp_status_code"] == 499 and newest["error_msg"] == "request cancelled"
