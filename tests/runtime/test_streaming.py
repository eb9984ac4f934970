"""Streams pass through as they arrive, and a disconnect on either side is passed on."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest

from .harness import Site, eventually, metric, next_event, process_exists, serving


async def test_events_reach_the_client_before_the_upstream_has_finished(tmp_path: Path) -> None:
    site = Site(tmp_path)
    site.fake("m")
    gate = tmp_path / "gate"
    async with serving(site.write()) as proxy:
        async with await proxy.chat(
            "m", stream=True, headers={"X-Fake-Gate": str(gate), "X-Fake-Chunks": "3"}
        ) as response:
            assert response.status == 200
            assert response.headers["Content-Type"] == "text/event-stream"
            assert response.headers["X-Accel-Buffering"] == "no"
            # The upstream is blocked after its first event until the gate opens: the event
            # can only be here if it was forwarded on its own.
            first = await next_event(response)
            assert b'"tok0 "' in first
            assert not gate.exists()
            gate.touch()
            rest = (await response.read()).split(b"\n\n")
        assert [b'"tok1 "' in rest[0], b'"tok2 "' in rest[1]] == [True, True]
        assert b'"timings"' in rest[2] and rest[3] == b"data: [DONE]"


async def test_a_client_that_disconnects_mid_stream_closes_the_upstream_connection(tmp_path: Path) -> None:
    site = Site(tmp_path)
    fake = site.fake("m")
    async with serving(site.write()) as proxy:
        # Long enough that only a disconnect ends it within the test's patience.
        headers = {"X-Fake-Chunks": "100000", "X-Fake-Chunk-Delay": "0.02"}
        response = await proxy.chat("m", stream=True, headers=headers)
        await next_event(response)
        response.close()
        await eventually(lambda: bool(fake.events("disconnect")), "the upstream saw the client leave")
        await eventually(lambda: proxy.swapper.slot("m").holders == 0, "the request let go of the model")
        # The model stays up and serves the next request.
        async with await proxy.chat("m") as again:
            assert again.status == 200


async def test_an_upstream_that_dies_mid_stream_ends_it_with_an_error_event_and_restarts_next_time(
    tmp_path: Path,
) -> None:
    site = Site(tmp_path)
    fake = site.fake("m")
    async with serving(site.write()) as proxy:
        async with await proxy.chat(
            "m", stream=True, headers={"X-Fake-Die-After": "2", "X-Fake-Chunks": "5"}
        ) as response:
            assert response.status == 200
            events = [e for e in (await response.read()).split(b"\n\n") if e]
        assert [b"tok0" in events[0], b"tok1" in events[1]] == [True, True]
        assert events[2].startswith(b'data: {"error":')
        assert b"crashing on purpose after 2 chunks" in events[2]
        assert len(events) == 3
        await eventually(lambda: not process_exists(fake.pids()[0]), "the dead child is reaped")
        async with await proxy.chat("m") as again:
            assert again.status == 200
            await again.read()  # whole: a client that leaves mid-answer is counted as a 499
        assert fake.starts() == 2
        assert metric(await proxy.metrics(), "halogen_request_errors_total")["m"] == "1"


async def test_an_answer_cut_short_by_a_dying_upstream_never_looks_complete(tmp_path: Path) -> None:
    site = Site(tmp_path)
    fake = site.fake("m")
    async with serving(site.write()) as proxy:
        async with await proxy.chat("m", headers={"X-Fake-Die-Mid-Body": "1"}) as response:
            assert response.status == 200  # the upstream's status was already on its way
            with pytest.raises(aiohttp.ClientPayloadError):
                await response.read()
        async with await proxy.chat("m") as again:
            assert again.status == 200
        assert fake.starts() == 2
