"""Faults a model's process or a client throws at a running proxy, each through the real HTTP path.

Every fault in `FAULTS` must end in a clean error or a clean end for the client (never a hang:
each runs under a bound), and the proxy must survive it: no request left in flight or queued,
`/running` telling the truth, the next request served, no process left behind at shutdown and
nothing logged as an unhandled error.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shlex
import signal
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from .harness import (
    PATIENCE,
    Proxy,
    Site,
    eventually,
    fake_argv,
    fake_process,
    free_ports,
    metric,
    next_event,
    process_exists,
    serving,
)

Scenario = Callable[[Path], Awaitable[None]]
CHAT = {"messages": [{"role": "user", "content": "hi"}]}


# --- what every scenario checks ----------------------------------------------------------


async def error_of(response: aiohttp.ClientResponse) -> tuple[int, Any]:
    """The status and the `error` of an answer: an object on OpenAI routes, a string on Ollama's."""
    async with response:
        return response.status, (await response.json())["error"]


async def in_flight(proxy: Proxy) -> dict[str, int]:
    """`halogen_requests_in_flight` per model, from /metrics."""
    text = await proxy.metrics()
    rows = metric(text, "halogen_requests_in_flight")
    assert rows, text
    return {model: int(value) for model, value in rows.items()}


async def settled(proxy: Proxy) -> None:
    """No request holds or waits for any model any more."""

    async def idle() -> bool:
        return not any((await in_flight(proxy)).values())

    await eventually(idle, "every request let go of its model")


def children_recorded(root: Path) -> list[int]:
    """Every process a fake (or a test's own stand-in) recorded starting under `root`."""
    pids = []
    for record in root.glob("*.events"):
        for line in record.read_text().splitlines():
            row = json.loads(line)
            if row["event"] == "start":
                pids.append(row["pid"])
            elif row["event"] == "grandchild":
                pids.append(row["child"])
    return pids


async def ndjson_lines(response: aiohttp.ClientResponse) -> list[dict[str, Any]]:
    text = (await response.read()).decode()
    return [json.loads(line) for line in text.splitlines()]


def ollama_chat(proxy: Proxy, model: str, headers: dict[str, str], *, stream: bool = True) -> Any:
    body = {"model": model, "stream": stream, **CHAT}
    return proxy.client.post("/api/chat", json=body, headers=headers)


# --- the child fails to start -----------------------------------------------------------


async def child_exits_at_start(tmp_path: Path) -> None:
    site = Site(tmp_path)
    fake = site.fake("m", "--exit-at-start", "3")
    site.fake("other")
    async with serving(site.write()) as proxy:
        for attempt in (1, 2):
            status, error = await error_of(await proxy.chat("m"))
            assert (status, error["code"]) == (502, "start_failed")
            assert "exited with code 3" in error["message"]
            assert "failed to load model 'fake.gguf'" in error["message"]
            # Each request tries again: a failed start leaves nothing wedged.
            assert fake.starts() == attempt
            assert await proxy.running() == {}
        assert await proxy.served_by("other") == "other"
        await settled(proxy)


async def child_hangs_loading_past_the_health_check_timeout(tmp_path: Path) -> None:
    site = Site(tmp_path)
    # It answers 503 for ever and ignores SIGTERM: only SIGKILL after unloadTimeout ends it.
    fake = site.fake("m", "--never-ready", "--ignore-sigterm", unloadTimeout=1)
    site.fake("other")
    async with serving(site.write(), health_check_timeout=2) as proxy:
        status, error = await error_of(await proxy.chat("m"))
        assert (status, error["code"]) == (502, "start_failed")
        assert "not ready within 2 s" in error["message"] and "loading model" in error["message"]
        assert not process_exists(fake.last_pid())
        assert [e["signal"] for e in fake.events("signal-ignored")] == ["SIGTERM"]
        assert await proxy.running() == {}
        assert await proxy.served_by("other") == "other"
        await settled(proxy)


async def child_never_binds_its_port(tmp_path: Path) -> None:
    site = Site(tmp_path)
    fake = site.fake("m", "--hang-at-start")
    site.fake("other")
    async with serving(site.write(), health_check_timeout=2) as proxy:
        status, error = await error_of(await proxy.chat("m"))
        assert (status, error["code"]) == (502, "start_failed")
        assert "hanging before it binds its port" in error["message"]
        assert not process_exists(fake.last_pid())
        assert await proxy.served_by("other") == "other"
        await settled(proxy)


async def port_taken_by_another_process(tmp_path: Path) -> None:
    site = Site(tmp_path)
    fake = site.fake("m")
    # Another llama-server-like process (a leftover, say) already serves on the model's port.
    squatter_record = tmp_path / "squatter.events"
    with fake_process(fake.port, "squatter", squatter_record) as squatter:
        async with serving(site.write()) as proxy:

            async def squatter_listens() -> bool:
                try:
                    async with proxy.client.get(f"http://127.0.0.1:{fake.port}/health") as answer:
                        return answer.status == 200
                except aiohttp.ClientConnectionError:
                    return False

            await eventually(squatter_listens, "the squatter listens")
            status, error = await error_of(await proxy.chat("m"))
            assert (status, error["code"]) == (502, "start_failed")
            assert f"127.0.0.1:{fake.port} is already in use" in error["message"]
            # No request went to the wrong server.
            assert not [line for line in squatter_record.read_text().splitlines() if '"request"' in line]
            assert await proxy.running() == {}
            squatter.terminate()
            squatter.wait(PATIENCE)
            assert await proxy.served_by("m") == "m"
            await settled(proxy)


# --- the child fails while it serves ------------------------------------------------------


async def child_dies_mid_stream_openai(tmp_path: Path) -> None:
    site = Site(tmp_path)
    fake = site.fake("m")
    async with serving(site.write()) as proxy:
        headers = {"X-Fake-Die-After": "2", "X-Fake-Chunks": "5"}
        async with await proxy.chat("m", stream=True, headers=headers) as response:
            assert response.status == 200
            events = [e for e in (await response.read()).split(b"\n\n") if e]  # a clean end
        assert events[-1].startswith(b'data: {"error":') and b"crashing on purpose" in events[-1]
        assert await proxy.served_by("m") == "m"
        assert fake.starts() == 2
        await settled(proxy)


async def child_dies_mid_stream_ollama(tmp_path: Path) -> None:
    site = Site(tmp_path)
    fake = site.fake("m")
    async with serving(site.write()) as proxy:
        headers = {"X-Fake-Die-After": "2", "X-Fake-Chunks": "5"}
        async with ollama_chat(proxy, "m", headers) as response:
            assert response.status == 200
            lines = await ndjson_lines(response)  # a clean end
        assert [line["message"]["content"] for line in lines[:2]] == ["tok0 ", "tok1 "]
        assert "crashing on purpose after 2 chunks" in lines[-1]["error"]
        async with ollama_chat(proxy, "m", {}) as response:
            assert response.status == 200 and (await ndjson_lines(response))[-1]["done"] is True
        assert fake.starts() == 2
        await settled(proxy)


async def child_dies_mid_answer_openai(tmp_path: Path) -> None:
    site = Site(tmp_path)
    fake = site.fake("m")
    async with serving(site.write()) as proxy:
        async with await proxy.chat("m", headers={"X-Fake-Die-Mid-Body": "1"}) as response:
            with pytest.raises(aiohttp.ClientPayloadError):  # cut short, never passed off as whole
                await response.read()
        assert await proxy.served_by("m") == "m"
        assert fake.starts() == 2
        await settled(proxy)


async def child_dies_mid_answer_ollama(tmp_path: Path) -> None:
    site = Site(tmp_path)
    fake = site.fake("m")
    async with serving(site.write()) as proxy:
        response = await ollama_chat(proxy, "m", {"X-Fake-Die-Mid-Body": "1"}, stream=False)
        status, error = await error_of(response)
        assert status == 502 and "crashing on purpose mid-body" in error
        async with ollama_chat(proxy, "m", {}, stream=False) as response:
            assert response.status == 200
        assert fake.starts() == 2
        await settled(proxy)


async def child_dies_mid_error_answer(tmp_path: Path) -> None:
    site = Site(tmp_path)
    fake = site.fake("m")
    async with serving(site.write()) as proxy:
        dying = {"X-Fake-Status": "500", "X-Fake-Die-Mid-Body": "1"}
        async with await proxy.chat("m", headers=dying) as response:
            assert response.status == 500  # the upstream's status was already on its way
            with pytest.raises(aiohttp.ClientPayloadError):
                await response.read()
        for stream in (False, True):
            status, error = await error_of(await ollama_chat(proxy, "m", dying, stream=stream))
            assert status == 502 and "crashing on purpose mid-body" in error
        async with ollama_chat(proxy, "m", {}, stream=False) as response:
            assert response.status == 200
        assert fake.starts() == 4
        await settled(proxy)


async def child_is_killed_while_idle(tmp_path: Path) -> None:
    site = Site(tmp_path)
    fake = site.fake("m")
    async with serving(site.write()) as proxy:
        assert await proxy.served_by("m") == "m"
        first = fake.last_pid()
        os.kill(first, signal.SIGKILL)  # the OOM killer, say

        async def gone() -> bool:
            return await proxy.running() == {}

        await eventually(gone, "/running no longer lists the dead model")
        assert not process_exists(first)
        assert await proxy.served_by("m") == "m"
        assert fake.starts() == 2
        await settled(proxy)


async def upstream_refuses_connections(tmp_path: Path) -> None:
    site = Site(tmp_path)
    # Ready at spawn (no check endpoint), but nothing ever listens on its port.
    fake = site.fake("m", "--hang-at-start", checkEndpoint="none")
    site.fake("other")
    site.top["groups"] = {"side": {"swap": False, "exclusive": False, "members": ["m", "other"]}}
    async with serving(site.write()) as proxy:
        for answer in (await proxy.chat("m"), await ollama_chat(proxy, "m", {}, stream=False)):
            status, error = await error_of(answer)
            assert status == 502
            message = error if isinstance(error, str) else error["message"]
            assert "did not answer" in message and "hanging before it binds" in message
        assert await proxy.served_by("other") == "other"
        assert await proxy.running() == {"m": "ready", "other": "ready"}
        async with proxy.client.post("/unload/m") as response:
            assert response.status == 200
        assert not process_exists(fake.last_pid())
        await settled(proxy)


async def upstream_closes_the_connection_without_answering(tmp_path: Path) -> None:
    site = Site(tmp_path)
    fake = site.fake("m")
    async with serving(site.write()) as proxy:
        status, error = await error_of(await proxy.chat("m", headers={"X-Fake-Close": "1"}))
        assert (status, error["code"]) == (502, "upstream_failed")
        response = await ollama_chat(proxy, "m", {"X-Fake-Close": "1"}, stream=False)
        status, message = await error_of(response)
        assert status == 502 and "did not answer" in message
        # The process itself is fine: the same one serves the next request.
        assert await proxy.served_by("m") == "m"
        assert fake.starts() == 1
        await settled(proxy)


async def cmd_stop_hangs(tmp_path: Path) -> None:
    site = Site(tmp_path)
    # The stop command never returns (nor stops anything): after unloadTimeout it is killed,
    # and so is the model.
    (port,) = free_ports(1)
    stopper = fake_argv(port, "stopper", tmp_path / "stopper.events", "--hang-at-start")
    fake = site.fake("m", cmdStop=shlex.join(stopper) + " --note ${PID}", unloadTimeout=1)
    async with serving(site.write()) as proxy:
        assert await proxy.served_by("m") == "m"
        async with proxy.client.post("/unload/m") as response:
            assert response.status == 200
        (stop,) = [e for e in (tmp_path / "stopper.events").read_text().splitlines() if e]
        assert json.loads(stop)["argv"][-2:] == ["--note", str(fake.last_pid())]
        assert not process_exists(fake.last_pid()) and not process_exists(json.loads(stop)["pid"])
        assert await proxy.running() == {}
        assert await proxy.served_by("m") == "m"
        await settled(proxy)


# --- the client misbehaves ------------------------------------------------------------------

# A long stream (64 MiB) that the client does not read: the proxy may hold what socket buffers
# hold, not the stream.
LONG_STREAM = {"X-Fake-Chunks": "4096", "X-Fake-Chunk-Bytes": "16384", "X-Fake-Report-Stall": "1"}
READ_AHEAD_BOUND = 24 * 1024 * 1024


async def _slow_client(tmp_path: Path, open_stream: Callable[[Proxy], Any]) -> None:
    site = Site(tmp_path)
    fake = site.fake("m")
    async with serving(site.write()) as proxy:
        async with open_stream(proxy) as response:
            assert response.status == 200
            received = len(await response.content.readline())
            await eventually(
                lambda: bool(fake.events("stalled") or fake.events("streamed")),
                "the upstream was held back or finished",
            )
            assert not fake.events("streamed"), "the proxy read the whole stream ahead of its client"
            (stall,) = fake.events("stalled")
            assert stall["bytes"] < READ_AHEAD_BOUND
            # Then the client reads on, and gets it all.
            while chunk := await response.content.readany():
                received += len(chunk)
        (streamed,) = fake.events("streamed")
        assert received > streamed["bytes"] * 0.9
        await settled(proxy)


async def slow_client_openai_stream(tmp_path: Path) -> None:
    await _slow_client(
        tmp_path,
        lambda proxy: proxy.client.post(
            "/v1/chat/completions", json={"model": "m", "stream": True, **CHAT}, headers=LONG_STREAM
        ),
    )


async def slow_client_ollama_stream(tmp_path: Path) -> None:
    await _slow_client(tmp_path, lambda proxy: ollama_chat(proxy, "m", LONG_STREAM))


async def client_leaves_while_queued_behind_a_swap(tmp_path: Path) -> None:
    site = Site(tmp_path)
    site.fake("a")
    b = site.fake("b")
    gate = tmp_path / "gate"
    async with serving(site.write()) as proxy:
        stream = await proxy.chat("a", stream=True, headers={"X-Fake-Gate": str(gate)})
        await next_event(stream)
        for route in ("openai", "ollama"):
            if route == "openai":
                queued = asyncio.create_task(proxy.chat("b"))
            else:
                queued = asyncio.create_task(ollama_chat(proxy, "b", {}, stream=False))
            await eventually(lambda: proxy.swapper.queued()["b"] == 1, f"the {route} request for b waits")
            queued.cancel()  # the client hangs up
            await asyncio.gather(queued, return_exceptions=True)
            await eventually(lambda: proxy.swapper.queued()["b"] == 0, "it left the queue")
        assert b.starts() == 0 and await proxy.running() == {"a": "ready"}
        gate.touch()
        await stream.read()
        stream.release()
        assert await proxy.served_by("b") == "b"
        await settled(proxy)


async def client_leaves_while_its_model_starts(tmp_path: Path) -> None:
    site = Site(tmp_path)
    gate = tmp_path / "ready"
    fake = site.fake("m", "--ready-gate", str(gate))
    async with serving(site.write()) as proxy:
        leaving = asyncio.create_task(proxy.chat("m"))
        await eventually(lambda: fake.starts() == 1, "the model is starting")
        assert await proxy.running() == {"m": "starting"}
        leaving.cancel()  # the client hangs up
        await asyncio.gather(leaving, return_exceptions=True)
        await eventually(lambda: proxy.swapper.slot("m").holders == 0, "it let go of the start")
        gate.touch()

        async def ready() -> bool:
            return await proxy.running() == {"m": "ready"}

        await eventually(ready, "the start went on without the client")
        assert await proxy.served_by("m") == "m"
        assert fake.starts() == 1
        await settled(proxy)


async def client_leaves_mid_stream_openai(tmp_path: Path) -> None:
    site = Site(tmp_path)
    fake = site.fake("m")
    async with serving(site.write()) as proxy:
        headers = {"X-Fake-Chunks": "100000", "X-Fake-Chunk-Delay": "0.02"}
        response = await proxy.chat("m", stream=True, headers=headers)
        await next_event(response)
        response.close()
        await eventually(lambda: bool(fake.events("disconnect")), "the upstream saw the client leave")
        await settled(proxy)
        assert await proxy.served_by("m") == "m"
        assert fake.starts() == 1


async def client_leaves_mid_stream_ollama(tmp_path: Path) -> None:
    site = Site(tmp_path)
    fake = site.fake("m")
    async with serving(site.write()) as proxy:
        headers = {"X-Fake-Chunks": "100000", "X-Fake-Chunk-Delay": "0.02"}
        response = await ollama_chat(proxy, "m", headers)
        await response.content.readline()
        response.close()
        await eventually(lambda: bool(fake.events("disconnect")), "the upstream saw the client leave")
        await settled(proxy)
        async with ollama_chat(proxy, "m", {}) as response:
            assert (await ndjson_lines(response))[-1]["done"] is True
        assert fake.starts() == 1


async def proxy_stops_with_requests_in_flight(tmp_path: Path) -> None:
    site = Site(tmp_path)
    site.fake("a")
    b = site.fake("b", "--ready-gate", str(tmp_path / "never"))
    site.fake("c")
    site.top["groups"] = {"side": {"swap": False, "exclusive": False, "members": ["a", "b"]}}
    async with aiohttp.ClientSession() as client:
        async with serving(site.write()) as proxy:
            url = proxy.server.url
            headers = {"X-Fake-Gate": str(tmp_path / "never")}
            chat = {"stream": True, **CHAT}
            stream = await client.post(
                url + "/v1/chat/completions", json={"model": "a", **chat}, headers=headers
            )
            await next_event(stream)
            starting = asyncio.create_task(
                client.post(url + "/api/chat", json={"model": "b", "stream": False, **CHAT})
            )
            queued = asyncio.create_task(
                client.post(url + "/v1/chat/completions", json={"model": "c", **CHAT})
            )
            await eventually(
                lambda: b.starts() == 1 and proxy.swapper.queued()["c"] == 1,
                "a stream in flight, a start under way and a request queued",
            )
        # The server has stopped: each client has its answer, none hangs.
        events = [e for e in (await stream.read()).split(b"\n\n") if e]
        assert events[-1].startswith(b'data: {"error":')
        stream.release()
        for task, error in ((starting, "halogen is shutting down"), (queued, "shutting_down")):
            async with await task as response:
                assert response.status == 503 and error in await response.text()


FAULTS: list[Scenario] = [
    child_exits_at_start,
    child_hangs_loading_past_the_health_check_timeout,
    child_never_binds_its_port,
    port_taken_by_another_process,
    child_dies_mid_stream_openai,
    child_dies_mid_stream_ollama,
    child_dies_mid_answer_openai,
    child_dies_mid_answer_ollama,
    child_dies_mid_error_answer,
    child_is_killed_while_idle,
    upstream_refuses_connections,
    upstream_closes_the_connection_without_answering,
    cmd_stop_hangs,
    slow_client_openai_stream,
    slow_client_ollama_stream,
    client_leaves_while_queued_behind_a_swap,
    client_leaves_while_its_model_starts,
    client_leaves_mid_stream_openai,
    client_leaves_mid_stream_ollama,
    proxy_stops_with_requests_in_flight,
]


@pytest.mark.parametrize("scenario", FAULTS, ids=[f.__name__ for f in FAULTS])
async def test_the_proxy_survives(
    scenario: Scenario, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    async with asyncio.timeout(PATIENCE * 2):  # never a hang
        await scenario(tmp_path)
        pids = children_recorded(tmp_path)
        await eventually(lambda: not any(process_exists(pid) for pid in pids), "no process is left behind")
    unhandled = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert not unhandled
