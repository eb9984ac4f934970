"""halogen's UI API answers carry exactly the field names llama-swap's UI reads: its TypeScript
types (ui/src/lib/types.ts, vendored in fixtures/ui_types.json by tests/runtime/ui_types.py)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from halogen.runtime.base import activity
from tests.runtime import ui_types

from .harness import Site, serving
from .test_ui_api import Events

TYPES = ui_types.vendored()["interfaces"]
# Fields llama-swap sends that its UI's types leave out: `enabled` beside the samples
# (handleAPIPerformance, internal/server/apigroup.go).
UNTYPED = {"PerformanceResponse": {"enabled"}}


def holds(interface: str, value: dict[str, Any]) -> None:
    """`value` has every required field of `interface`, and no field it does not name."""
    shape = TYPES[interface]
    named, optional = set(shape["fields"]), set(shape["optional"])
    where = f"{interface} ({shape['file']}:{shape['line']})"
    assert named - optional <= set(value), f"{where} lacks {sorted(named - optional - set(value))}"
    assert set(value) <= named | UNTYPED.get(interface, set()), f"{where} has no {sorted(set(value) - named)}"


def test_the_vendored_types_are_those_of_the_mirror_when_it_is_there() -> None:
    if not ui_types.MIRROR.exists():
        pytest.skip("llama-swap's mirror is not on this machine")
    assert ui_types.derive() == ui_types.vendored()


async def test_every_answer_and_event_of_the_ui_api_has_llama_swaps_field_names(tmp_path: Path) -> None:
    site = Site(tmp_path)
    site.fake(
        "alpha", aliases=["a"], capabilities={"in": ["text", "image"], "out": ["text"], "context": 4096}
    )
    async with serving(site.write()) as proxy:
        await proxy.served_by("alpha")
        async with proxy.client.get("/api/events") as response:
            events = Events(response)
            await events.until("inflight")
            chat = await proxy.chat(
                "alpha", stream=True, headers={"X-Fake-Chunks": "3", "X-Fake-Chunk-Delay": "0.1"}
            )
            await events.until("inflight", lambda d: d["operation"] == "remove")
            await chat.read()
            chat.release()
            await events.until("activity")
        kinds = {kind for kind, _ in events.seen}
        assert kinds == {"logData", "modelStatus", "uiConfig", "profileChanged", "inflight", "activity"}
        for kind, data in events.seen:
            if kind == "logData":
                holds("LogData", data)
            elif kind == "modelStatus":
                for model in data:
                    holds("Model", model)
                assert "context_length" in data[0] and data[0]["capabilities"] == {"vision": True}
            elif kind == "uiConfig":
                holds("UIConfig", data)
                assert set(data["activity"]) == {"session_id"}
            elif kind == "inflight":
                holds("InFlightStats", data)
                for row in [*data.get("requests", []), *([data["request"]] if "request" in data else [])]:
                    holds("InflightRequestEntry", row)
        assert {d["operation"] for k, d in events.seen if k == "inflight"} == {"snapshot", "upsert", "remove"}

        page = await (await proxy.client.get("/api/metrics/activity")).json()
        holds("ActivityPage", page)
        for row in page["data"]:
            holds("ActivityLogEntry", row)
            holds("TokenMetrics", row["tokens"])
        stats = await (await proxy.client.get("/api/metrics/stats")).json()
        holds("ActivityStatsData", stats)
        capture = await (await proxy.client.get(f"/api/captures/{page['data'][0]['id']}")).json()
        holds("ReqRespCapture", capture)
        performance = await (await proxy.client.get("/api/performance")).json()
        holds("PerformanceResponse", performance)
        for sample in performance["sys_stats"]:
            holds("SysStat", sample)
            for nic in sample["net_io"]:
                holds("NetIOStat", nic)
        for gpu in performance["gpu_stats"]:
            holds("GpuStat", gpu)
        hardware = await (await proxy.client.get("/api/hardware")).json()
        holds("HardwareSnapshot", hardware)
        for part, interface in (
            ("capture", "HardwareCapture"),
            ("architecture", "HardwareArchitecture"),
            ("operating_system", "HardwareOperatingSystem"),
            ("environment", "HardwareEnvironment"),
            ("cpu", "HardwareCPU"),
            ("memory", "HardwareMemory"),
        ):
            holds(interface, hardware[part])
        for accelerator in hardware["accelerators"]:
            holds("HardwareAccelerator", accelerator)
    await asyncio.sleep(0)


def test_the_envelope_and_the_histograms_have_llama_swaps_field_names() -> None:
    import json

    from halogen.runtime.base import events

    message = events.frame(events.ACTIVITY, events.payload({"id": 1}))
    holds("APIEventEnvelope", json.loads(message.split(b"data:", 1)[1]))
    for values in ([3.0], [1.0, 2.0, 3.5, 10.0, 40.0]):
        histogram = activity.histogram(values)
        assert histogram is not None
        holds("HistogramData", histogram)
