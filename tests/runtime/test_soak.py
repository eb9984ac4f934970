"""A bounded soak on loopback: many clients, three chat models in one swap group and an embedding
model in a persistent group, every route family, against `halogen serve` as its own
process. A leak check, not a speed check: nothing here measures time.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest

from .harness import Site, eventually, metric, process_exists
from .processes import children, halogen_serve

pytestmark = pytest.mark.slow

CLIENTS = 32
WARM_UP = 96
REQUESTS = 1024
CHAT_MODELS = ("chat-a", "chat-b", "chat-c")
EMBED_MODEL = "embed"
# The whole run must end within this; past it, something is stuck.
DEADLINE = 240.0
FD_SLACK = 4
RSS_SLACK_KIB = 16 * 1024

CHAT = [{"role": "user", "content": "hi"}]


@dataclass
class Tally:
    statuses: Counter[int] = field(default_factory=Counter)
    kinds: Counter[str] = field(default_factory=Counter)
    unexpected: list[str] = field(default_factory=list)


# --- the proxy as a process ---------------------------------------------------------------


def fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


# --- the clients --------------------------------------------------------------------------


async def one_request(client: aiohttp.ClientSession, pick: random.Random, tally: Tally) -> None:
    """One request of a random kind for a random model; its outcome goes into `tally`."""
    if pick.random() < 0.25:
        model = EMBED_MODEL
        kind = pick.choice(["openai-embed", "ollama-embed"])
    else:
        model = pick.choice(CHAT_MODELS)
        kind = pick.choice(
            [
                "openai-chat",
                "openai-chat-stream",
                "ollama-chat",
                "ollama-chat-stream",
                "ollama-generate-stream",
            ]
        )
    path, body = {
        "openai-embed": ("/v1/embeddings", {"model": model, "input": "x"}),
        "ollama-embed": ("/api/embed", {"model": model, "input": ["x"]}),
        "openai-chat": ("/v1/chat/completions", {"model": model, "messages": CHAT}),
        "openai-chat-stream": ("/v1/chat/completions", {"model": model, "messages": CHAT, "stream": True}),
        "ollama-chat": ("/api/chat", {"model": model, "messages": CHAT, "stream": False}),
        "ollama-chat-stream": ("/api/chat", {"model": model, "messages": CHAT}),
        "ollama-generate-stream": ("/api/generate", {"model": model, "prompt": "Once"}),
    }[kind]
    tally.kinds[kind] += 1
    async with client.post(path, json=body) as response:
        raw = await response.read()
        tally.statuses[response.status] += 1
        if response.status == 200:
            if not answered(kind, model, raw):
                tally.unexpected.append(f"{kind} {model}: {raw[:300]!r}")
        elif response.status == 429:
            if response.headers.get("Retry-After") != "1":
                tally.unexpected.append(f"{kind} {model}: 429 without Retry-After")
        elif response.status != 503:
            tally.unexpected.append(f"{kind} {model}: {response.status} {raw[:300]!r}")


def answered(kind: str, model: str, raw: bytes) -> bool:
    """Whether a 200 answer is complete and came from `model`."""
    if kind == "openai-chat-stream":
        return raw.endswith(b"data: [DONE]\n\n") and f'"served_by": "{model}"'.encode() in raw
    if kind.endswith("-stream"):
        lines = [json.loads(line) for line in raw.splitlines()]
        return bool(lines) and lines[-1].get("done") is True and not any("error" in line for line in lines)
    answer = json.loads(raw)
    if kind == "openai-chat":
        return bool(answer.get("served_by") == model)
    if kind == "ollama-chat":
        return bool(answer["message"]["content"] == f"hello from {model}")
    if kind == "openai-embed":
        return bool(answer["data"][0]["embedding"])
    return bool(answer["embeddings"][0])


async def load(url: str, requests: int, seed: int) -> Tally:
    tally = Tally()
    per_client = [requests // CLIENTS + (1 if i < requests % CLIENTS else 0) for i in range(CLIENTS)]

    async def client_loop(client: aiohttp.ClientSession, index: int) -> None:
        pick = random.Random(seed * 1000 + index)
        for _ in range(per_client[index]):
            await one_request(client, pick, tally)

    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(base_url=url, connector=connector) as client:
        await asyncio.gather(*(client_loop(client, i) for i in range(CLIENTS)))
    return tally


async def get(url: str, path: str, method: str = "GET") -> str:
    async with aiohttp.ClientSession() as client, client.request(method, url + path) as response:
        assert response.status == 200, path
        return await response.text()


# --- the soak -----------------------------------------------------------------------------


async def test_a_soak_of_mixed_requests_over_swapping_models_leaks_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    site = Site(tmp_path)
    for mid in (*CHAT_MODELS, EMBED_MODEL):
        site.fake(mid)
    site.top["groups"] = {
        "chat": {"swap": True, "exclusive": True, "members": list(CHAT_MODELS)},
        "embeddings": {"swap": True, "exclusive": False, "persistent": True, "members": [EMBED_MODEL]},
    }
    # Blocks the loop until /health answers; nothing else runs on it yet.
    with halogen_serve(site.write(), tmp_path / "proxy.log", "--no-watch") as serving:
        process, url = serving.process, serving.url
        async with asyncio.timeout(DEADLINE):  # no deadlock
            warm = await load(url, WARM_UP, seed=1)
            await get(url, "/unload", "POST")
            fds_before, rss_before = fds(process.pid), rss_kib(process.pid)
            tally = await load(url, REQUESTS, seed=2)
            fds_busy = fds(process.pid)
            await get(url, "/unload", "POST")
        fds_after, rss_after = fds(process.pid), rss_kib(process.pid)

        metrics = await get(url, "/metrics")
        history = (await get(url, "/logs")).splitlines()
        assert children(process.pid) == []  # every model was unloaded: no child, no zombie
        assert serving.stop() == 0, serving.output()

    starts = sum(fake.starts() for fake in site.fakes.values())

    def total(name: str) -> float:
        return sum(map(float, metric(metrics, name).values()))

    swaps = total("halogen_swaps_total")
    statuses = warm.statuses + tally.statuses
    with capsys.disabled():
        print(
            f"\nsoak: {REQUESTS} requests (+{WARM_UP} warm-up) from {CLIENTS} clients; "
            f"statuses {dict(sorted(tally.statuses.items()))} (warm-up {dict(sorted(warm.statuses.items()))}); "
            f"swaps {int(swaps)}; fds {fds_before} -> {fds_after} (at the end of the load {fds_busy}); "
            f"rss {rss_before} -> {rss_after} KiB"
        )

    assert not warm.unexpected and not tally.unexpected, (warm.unexpected + tally.unexpected)[:10]
    assert set(statuses) <= {200, 429, 503}
    assert sum(tally.statuses.values()) == REQUESTS
    assert statuses[200] >= (REQUESTS + WARM_UP) // 4  # refusals do not crowd out service
    # Every process start was counted and logged, and there were swaps to count.
    assert swaps == starts >= len(CHAT_MODELS) + 1
    assert len(history) < 2000, "the log history overflowed: the count below would be short"
    assert sum("is ready" in line for line in history) == starts
    assert not any(map(float, metric(metrics, "halogen_requests_in_flight").values()))
    # Requests served or refused are all counted, per model.
    assert total("halogen_requests_total") == REQUESTS + WARM_UP
    # Leaks: the proxy holds as many descriptors and about as much memory as after the warm-up.
    assert fds_after <= fds_before + FD_SLACK
    # With models running, pooled connections count; they follow concurrency, not requests.
    assert fds_busy <= fds_before + 2 * CLIENTS + FD_SLACK
    assert rss_after <= rss_before + RSS_SLACK_KIB
    output = serving.output()
    assert "Traceback" not in output and "Error handling request" not in output, output[-3000:]
    pids = [pid for fake in site.fakes.values() for pid in fake.pids()]
    await eventually(lambda: not any(process_exists(pid) for pid in pids), "no model process is left")
