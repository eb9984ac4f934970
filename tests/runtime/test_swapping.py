"""Which models run, live: eviction by group, busy models, shared starts, ttl, limits."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp

from .harness import PATIENCE, Site, eventually, metric, next_event, process_exists, serving


async def test_each_group_kind_evicts_as_the_config_contract_says(tmp_path: Path) -> None:
    site = Site(tmp_path)
    for mid in ("c1", "c2", "t1", "t2", "p", "d1", "d2"):
        site.fake(mid)
    site.top["groups"] = {
        "chat": {"swap": True, "exclusive": True, "members": ["c1", "c2"]},
        "tools": {"swap": False, "exclusive": False, "members": ["t1", "t2"]},
        "keep": {"swap": True, "exclusive": False, "persistent": True, "members": ["p"]},
    }
    async with serving(site.write()) as proxy:
        steps = [
            ("t1", {"t1"}),
            ("t2", {"t1", "t2"}),  # no swap: side by side
            ("p", {"t1", "t2", "p"}),  # not exclusive: others stay
            ("c1", {"c1", "p"}),  # exclusive: stops other groups, but not a persistent one
            ("c2", {"c2", "p"}),  # swap: one member of its group at a time
            ("d1", {"d1", "p"}),  # the implicit default group swaps and is exclusive
            ("d2", {"d2", "p"}),
        ]
        for model, expected in steps:
            assert await proxy.served_by(model) == model
            assert set(await proxy.running()) == expected, model
        for mid, fake in site.fakes.items():
            alive = [pid for pid in fake.pids() if process_exists(pid)]
            assert len(alive) == (1 if mid in {"d2", "p"} else 0), mid


async def test_a_busy_model_is_never_stopped_and_later_requests_for_it_queue_behind_the_waiting_swap(
    tmp_path: Path,
) -> None:
    site = Site(tmp_path)
    a, b = site.fake("a"), site.fake("b")
    gate = tmp_path / "gate"
    async with serving(site.write()) as proxy:
        stream = await proxy.chat("a", stream=True, headers={"X-Fake-Gate": str(gate)})
        first = await next_event(stream)
        assert b"tok0" in first

        waiting = asyncio.create_task(proxy.served_by("b"))
        await eventually(lambda: proxy.swapper.queued()["b"] == 1, "the request for b is queued")
        # A later request for the busy model does not overtake the waiting swap (which would
        # starve b for as long as requests for a keep coming): it queues behind it.
        later = asyncio.create_task(proxy.served_by("a"))
        await eventually(lambda: proxy.swapper.queued()["a"] == 1, "the later request for a is queued")
        assert await proxy.running() == {"a": "ready"}
        assert b.starts() == 0 and not waiting.done() and not later.done()

        gate.touch()
        rest = await stream.read()
        stream.release()
        assert rest.endswith(b"data: [DONE]\n\n")
        assert await waiting == "b"
        assert not process_exists(a.last_pid())
        assert await later == "a"
        assert a.starts() == 2


async def test_requests_for_a_starting_model_share_one_start(tmp_path: Path) -> None:
    site = Site(tmp_path)
    fake = site.fake("m", "--health-delay", "0.5")
    async with serving(site.write()) as proxy:
        answers = await asyncio.gather(*(proxy.served_by("m") for _ in range(6)))
        assert answers == ["m"] * 6
        assert fake.starts() == 1
        assert metric(await proxy.metrics(), "halogen_swaps_total")["m"] == "1"


async def test_an_idle_model_is_unloaded_after_its_ttl(tmp_path: Path) -> None:
    site = Site(tmp_path)
    fake = site.fake("m", ttl=1)
    async with serving(site.write()) as proxy:
        assert await proxy.served_by("m") == "m"
        assert await proxy.running() == {"m": "ready"}

        async def unloaded() -> bool:
            return await proxy.running() == {}

        await eventually(unloaded, "the ttl unloaded the model")
        assert not process_exists(fake.last_pid())
        assert await proxy.served_by("m") == "m"  # and the next request loads it again
        assert fake.starts() == 2


async def test_a_model_with_ttl_0_stays_loaded(tmp_path: Path) -> None:
    site = Site(tmp_path)
    fake = site.fake("m", ttl=0)
    async with serving(site.write()) as proxy:
        await proxy.served_by("m")
        slot = proxy.swapper.slot("m")
        assert slot.idle_timer is None and slot.expires_at is None
        # ttl 0 is "never", not "at once": after the answer the model is still there, the same
        # process, and the next request does not start it again.
        await asyncio.sleep(1.5)
        assert await proxy.running() == {"m": "ready"}
        assert process_exists(fake.last_pid())
        assert await proxy.served_by("m") == "m"
        assert fake.starts() == 1


async def test_past_the_concurrency_limit_a_request_gets_429_with_retry_after(tmp_path: Path) -> None:
    site = Site(tmp_path)
    site.fake("m", concurrencyLimit=2)
    gate = tmp_path / "gate"
    async with serving(site.write()) as proxy:
        streams = [await proxy.chat("m", stream=True, headers={"X-Fake-Gate": str(gate)}) for _ in range(2)]
        for stream in streams:
            await next_event(stream)
        async with await proxy.chat("m") as refused:
            assert refused.status == 429
            assert refused.headers["Retry-After"] == "1"
            error = (await refused.json())["error"]
            assert error["type"] == "rate_limit_error" and "limit of 2" in error["message"]
        gate.touch()
        for stream in streams:
            assert (await stream.read()).endswith(b"data: [DONE]\n\n")
            stream.release()
        assert await proxy.served_by("m") == "m"
        assert metric(await proxy.metrics(), "halogen_request_errors_total")["m"] == "1"


async def test_queued_requests_count_toward_the_limit_and_a_client_that_leaves_frees_its_place(
    tmp_path: Path,
) -> None:
    site = Site(tmp_path)
    site.fake("a")
    b = site.fake("b", concurrencyLimit=1)
    gate = tmp_path / "gate"
    async with serving(site.write()) as proxy:
        stream = await proxy.chat("a", stream=True, headers={"X-Fake-Gate": str(gate)})
        await next_event(stream)
        queued = asyncio.create_task(proxy.served_by("b"))
        await eventually(lambda: proxy.swapper.queued()["b"] == 1, "b is queued behind a")
        async with await proxy.chat("b") as refused:
            assert refused.status == 429

        queued.cancel()  # the client disconnects while queued
        await asyncio.gather(queued, return_exceptions=True)
        await eventually(lambda: proxy.swapper.queued()["b"] == 0, "the disconnected client left the queue")

        second = asyncio.create_task(proxy.served_by("b"))
        await eventually(lambda: proxy.swapper.queued()["b"] == 1, "a new request takes the free place")
        gate.touch()
        await stream.read()
        stream.release()
        assert await second == "b"
        assert b.starts() == 1


async def test_a_failed_start_answers_502_with_the_log_tail_to_every_waiting_request(tmp_path: Path) -> None:
    site = Site(tmp_path)
    fake = site.fake("m", "--exit-at-start", "2")
    async with serving(site.write()) as proxy:

        async def attempt() -> tuple[int, dict[str, str]]:
            async with await proxy.chat("m") as response:
                return response.status, (await response.json())["error"]

        results = await asyncio.gather(*(attempt() for _ in range(3)))
        assert fake.starts() == 1
        for status, error in results:
            assert status == 502
            assert error["code"] == "start_failed"
            assert "exited with code 2" in error["message"]
            assert "failed to load model 'fake.gguf'" in error["message"]
        assert await proxy.running() == {}


async def test_a_start_that_never_becomes_ready_fails_after_the_health_check_timeout(tmp_path: Path) -> None:
    site = Site(tmp_path)
    fake = site.fake("m", "--never-ready", unloadTimeout=1)
    # Long enough for the fake's first line, which the error must carry.
    async with serving(site.write(), health_check_timeout=2) as proxy, await proxy.chat("m") as response:
        assert response.status == 502
        message = (await response.json())["error"]["message"]
        assert "not ready within 2 s" in message and "loading model" in message
        assert not process_exists(fake.last_pid())


async def test_a_model_that_dies_while_ready_fails_its_request_with_502_and_restarts_on_the_next(
    tmp_path: Path,
) -> None:
    site = Site(tmp_path)
    fake = site.fake("m")
    async with serving(site.write()) as proxy:
        assert await proxy.served_by("m") == "m"
        first_pid = fake.last_pid()
        async with await proxy.chat("m", headers={"X-Fake-Die-After": "0"}) as response:
            assert response.status == 502
            message = (await response.json())["error"]["message"]
        assert "crashing on purpose before answering" in message
        await eventually(lambda: not process_exists(first_pid), "the dead child is reaped")
        assert await proxy.served_by("m") == "m"
        assert fake.starts() == 2


async def test_unload_stops_one_model_or_all(tmp_path: Path) -> None:
    site = Site(tmp_path)
    site.fake("a")
    site.fake("b")
    site.top["groups"] = {"side": {"swap": False, "exclusive": False, "members": ["a", "b"]}}
    async with serving(site.write()) as proxy:
        await proxy.served_by("a")
        await proxy.served_by("b")
        async with proxy.client.post("/unload/a") as response:
            assert await response.json() == {"status": "ok", "unloaded": ["a"]}
        assert await proxy.running() == {"b": "ready"}
        await proxy.served_by("a")
        async with proxy.client.get("/unload") as response:
            assert await response.json() == {"status": "ok", "unloaded": ["a", "b"]}
        assert await proxy.running() == {}
        async with proxy.client.post("/unload/nope") as response:
            assert response.status == 404


async def test_an_unload_while_a_request_is_in_flight_waits_for_it(tmp_path: Path) -> None:
    site = Site(tmp_path)
    site.fake("m")
    gate = tmp_path / "gate"
    async with serving(site.write()) as proxy:
        stream = await proxy.chat("m", stream=True, headers={"X-Fake-Gate": str(gate)})
        await next_event(stream)
        unload = asyncio.create_task(proxy.client.post("/unload/m"))
        await eventually(lambda: proxy.swapper.slot("m").draining, "the model drains")
        assert not unload.done()
        gate.touch()
        assert (await stream.read()).endswith(b"data: [DONE]\n\n")
        stream.release()
        async with await unload as response:
            assert response.status == 200
        assert await proxy.running() == {}


async def test_preloaded_models_start_at_boot(tmp_path: Path) -> None:
    site = Site(tmp_path)
    fake = site.fake("m", aliases=["mm"])
    site.fake("other")
    site.top["hooks"] = {"on_startup": {"preload": ["mm"]}}
    async with serving(site.write()) as proxy:

        async def preloaded() -> bool:
            return await proxy.running() == {"m": "ready"}

        await eventually(preloaded, "the preload started m")
        assert fake.starts() == 1


async def test_shutdown_stops_every_model(tmp_path: Path) -> None:
    site = Site(tmp_path)
    fakes = [site.fake("a", "--grandchild"), site.fake("b", "--ignore-sigterm", unloadTimeout=1)]
    site.top["groups"] = {"side": {"swap": False, "exclusive": False, "members": ["a", "b"]}}
    async with serving(site.write()) as proxy:
        await proxy.served_by("a")
        await proxy.served_by("b")
        await eventually(lambda: bool(fakes[0].events("grandchild")), "a's grandchild started")
    pids = [f.last_pid() for f in fakes] + [fakes[0].events("grandchild")[0]["child"]]
    for pid in pids[:2]:
        assert not process_exists(pid)
    await eventually(lambda: not process_exists(pids[2]), "the grandchild is gone")


async def test_a_request_for_a_stopping_model_waits_and_starts_it_again(tmp_path: Path) -> None:
    site = Site(tmp_path)
    # SIGTERM is ignored, so the stop lasts the whole 1 s grace: a window to send a request in.
    fake = site.fake("m", "--ignore-sigterm", unloadTimeout=1)
    async with serving(site.write()) as proxy:
        await proxy.served_by("m")
        unload = asyncio.create_task(proxy.swapper.unload("m"))
        await eventually(lambda: bool(fake.events("signal-ignored")), "the stop began")
        assert await proxy.served_by("m") == "m"
        await unload
        assert fake.starts() == 2


async def test_a_client_gets_a_clean_error_for_a_model_the_config_does_not_have(tmp_path: Path) -> None:
    site = Site(tmp_path)
    site.fake("m")
    async with serving(site.write()) as proxy:
        async with await proxy.chat("nope") as response:
            assert response.status == 404
            error = (await response.json())["error"]
            assert error["message"] == "model 'nope' not found" and error["code"] == "model_not_found"
        async with proxy.client.post("/v1/chat/completions", json={"messages": []}) as response:
            assert response.status == 400
            assert "model" in (await response.json())["error"]["message"]
        async with proxy.client.post("/v1/chat/completions", data=b"{not json") as response:
            assert response.status == 400


async def test_the_upstream_connection_pool_is_one_session_per_model(tmp_path: Path) -> None:
    site = Site(tmp_path)
    site.fake("m")
    async with serving(site.write()) as proxy:
        await proxy.served_by("m")
        session = proxy.swapper.upstream("m").pool.session
        await asyncio.gather(*(proxy.served_by("m") for _ in range(4)))
        assert proxy.swapper.upstream("m").pool.session is session
        assert isinstance(session, aiohttp.ClientSession)


async def test_a_drain_refuses_requests_that_hold_no_model_and_waits_for_those_that_do(
    tmp_path: Path,
) -> None:
    site = Site(tmp_path)
    a = site.fake("a")
    site.fake("b")
    site.top["groups"] = {"one": {"swap": True, "exclusive": True, "members": ["a", "b"]}}
    gate = tmp_path / "gate"
    async with serving(site.write()) as proxy:
        stream = await proxy.chat("a", stream=True, headers={"X-Fake-Gate": str(gate), "X-Fake-Chunks": "3"})
        await next_event(stream)
        queued = asyncio.create_task(proxy.chat("b"))  # waits for a to finish: it holds no model
        await eventually(lambda: proxy.swapper.queued()["b"] == 1, "b waits for room")
        closing = asyncio.create_task(proxy.server.close(drain=PATIENCE))
        async with await queued as refused:
            assert refused.status == 503
            assert (await refused.json())["error"]["code"] == "shutting_down"
        assert not closing.done() and process_exists(a.last_pid())
        gate.touch()
        rest = await stream.read()
        assert rest.rstrip().endswith(b"data: [DONE]") and b'"error"' not in rest
        await asyncio.wait_for(closing, PATIENCE)
        assert not process_exists(a.last_pid())


async def test_running_shows_the_router_rule_that_admitted_each_model(tmp_path: Path) -> None:
    site = Site(tmp_path)
    site.fake("a"), site.fake("b"), site.fake("e")
    site.top["routing"] = {
        "router": {"use": "matrix", "settings": {"matrix": {"sets": {"chat": "a & e", "solo": "b"}}}}
    }
    async with serving(site.write()) as proxy:
        for model in ("a", "e"):
            assert await proxy.served_by(model) == model
        async with proxy.client.get("/running") as response:
            rows = (await response.json())["running"]
        assert {r["model"]: r["rule"] for r in rows} == {"a": "chat", "e": "chat"}
        assert await proxy.served_by("b") == "b"
        async with proxy.client.get("/running") as response:
            rows = (await response.json())["running"]
        assert {r["model"]: r["rule"] for r in rows} == {"b": "solo"}
