"""A smoke run: wait for the config version asked for, list the models, then test them one
at a time (or N at a time), timing each model's load from the server's `/running`."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Mapping, Sequence
from typing import Any, TextIO

from halogen.smoke import checks, kinds
from halogen.smoke.checks import Measured
from halogen.smoke.client import CONFIG_VERSION_HEADER, Endpoint, Failed, loads
from halogen.smoke.progress import Bar
from halogen.smoke.report import Check, ModelReport, Report

# How often /running is asked while a model loads: the load time's resolution.
WATCH_EVERY = 0.05
# How often the config version is asked while waiting for it.
VERSION_EVERY = 1.0
# A request that should never load a model (/api/show, /running) gets at most this long.
QUICK = 10.0


async def reported_version(endpoint: Endpoint, timeout: float) -> str | None:
    """The config version the server says it runs: the `Halogen-Config-Version` header of any
    answer to `/api/version`, else `configVersion` in its JSON; None when it says none."""
    _, headers, body = await endpoint.probe("/api/version", timeout=timeout)
    header = headers.get(CONFIG_VERSION_HEADER)
    if header:
        return header.strip().lower()
    try:
        data = loads(body)
    except ValueError:
        return None
    given = data.get("configVersion") if isinstance(data, dict) else None
    return given.strip().lower() if isinstance(given, str) and given.strip() else None


async def wait_for_version(endpoint: Endpoint, wanted: str, wait: float) -> str:
    """Poll until the server reports config version `wanted`: "" once it does, else what it
    reported instead (or the last failure) when `wait` seconds have passed."""
    deadline = time.monotonic() + wait
    last = "no answer yet"
    while True:
        try:
            got = await reported_version(endpoint, min(QUICK, max(deadline - time.monotonic(), 0.1)))
            if got == wanted:
                return ""
            last = f"it reports config version {got[:80]}" if got else "it reports no config version"
        except Failed as exc:
            last = f"the last try failed: {exc}"
        left = deadline - time.monotonic()
        if left <= 0:
            return f"{endpoint.url} did not report config version {wanted} within {wait:g} s (--wait): {last}"
        await asyncio.sleep(min(VERSION_EVERY, left))


async def ready_models(endpoint: Endpoint) -> set[str] | None:
    """The models `/running` lists as ready; None when it does not answer in llama-swap's
    shape (`{"running": [{"model", "state"}]}`, internal/server/api.go)."""
    try:
        answer = await endpoint.get("/running", timeout=QUICK)
    except Failed:
        return None
    rows = answer.body.get("running") if isinstance(answer.body, dict) else None
    if not isinstance(rows, list):
        return None
    return {str(r.get("model")) for r in rows if isinstance(r, dict) and r.get("state") == "ready"}


async def _watch(endpoint: Endpoint, model: str, started: float) -> float:
    """Seconds from `started` until /running lists `model` as ready."""
    while True:
        ready = await ready_models(endpoint)
        if ready is not None and model in ready:
            return time.monotonic() - started
        await asyncio.sleep(WATCH_EVERY)


async def _show(endpoint: Endpoint, model: str) -> Mapping[str, Any] | None:
    try:
        answer = await endpoint.post("/api/show", {"model": model}, timeout=QUICK)
    except Failed:
        return None
    return answer.body if isinstance(answer.body, dict) else None


async def _run(endpoint: Endpoint, model: str, check: Check) -> tuple[Measured | None, bool]:
    """Run `check` into itself: what it measured (None if it failed), and whether it timed out."""
    started = time.monotonic()
    try:
        measured = await checks.BY_NAME[check.name](endpoint, model)
        check.passed, check.status = True, 200
        return measured, False
    except Failed as exc:
        check.status, check.error = exc.status, endpoint.redact(str(exc))
        return None, exc.timed_out
    finally:
        check.seconds = time.monotonic() - started


async def _loading(
    endpoint: Endpoint, model: str, check: Check
) -> tuple[Measured | None, bool, float | None]:
    """`_run` for the request that loads the model, with /running watched meanwhile: also the
    seconds until it listed the model ready, if it did before the answer was complete."""
    watch = asyncio.create_task(_watch(endpoint, model, time.monotonic()))
    try:
        measured, timed_out = await _run(endpoint, model, check)
    finally:
        seen = watch.result() if watch.done() else None
        watch.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watch
    return measured, timed_out, seen


async def test_model(
    endpoint: Endpoint, model: str, entry: Mapping[str, Any] | None, bar: Bar
) -> ModelReport:
    """Every check of `model`'s kind, in order. The first loads the model, unless it was
    loaded already: its load time is from sending it until /running lists the model ready
    (or, where /running does not say, until the first answer's headers)."""
    report = ModelReport(model, kinds.kind_of(entry, await _show(endpoint, model)))
    ready = await ready_models(endpoint)
    report.was_loaded = ready is not None and model in ready
    timed_out = ""
    for i, name in enumerate(kinds.CHECKS[report.kind]):
        check = Check(name)
        report.checks.append(check)
        if timed_out:
            check.skipped, check.error = True, f"not run: {timed_out} timed out"
            continue
        bar.step(f"{model}: {name}")
        if i == 0 and not report.was_loaded:
            seen = None
            if ready is not None:
                measured, late, seen = await _loading(endpoint, model, check)
            else:
                measured, late = await _run(endpoint, model, check)
            if seen is not None:
                report.load_seconds, report.load_from = seen, "running"
            elif measured is not None and measured.headers_at is not None:
                report.load_seconds, report.load_from = measured.headers_at, "first-byte"
        else:
            measured, late = await _run(endpoint, model, check)
        timed_out = name if late else ""
        if measured is not None and measured.ttft is not None:
            report.ttft_seconds = measured.ttft
            report.prompt_tps, report.generation_tps = measured.prompt_tps, measured.generation_tps
            report.speed_from = measured.speed_from
    bar.advance(model)
    return report


async def smoke(
    url: str,
    named: Sequence[str],
    *,
    api_key: str | None,
    timeout: float,
    concurrency: int = 1,
    config_version: str | None = None,
    wait: float = 300.0,
    progress: TextIO | None = None,
) -> Report:
    """Test the models at `url` (those `named`, else every model it lists)."""
    report = Report(url)
    async with Endpoint(url, api_key, timeout, connections=2 * concurrency + 2) as endpoint:
        if config_version is not None:
            report.error = endpoint.redact(await wait_for_version(endpoint, config_version, wait))
            if report.error:
                return report
        try:
            answer = await endpoint.get("/v1/models")
        except Failed as exc:
            report.error = endpoint.redact(f"cannot list the models: {exc}")
            return report
        entries = kinds.listed(answer.body)
        if entries is None:
            report.error = (
                f"{endpoint.where('/v1/models')} did not answer with a model list (`data`: [{{id}}, ...])"
            )
            return report
        report.config_version = answer.headers.get(CONFIG_VERSION_HEADER) or config_version
        by_id = {str(e["id"]): e for e in entries}
        ids = kinds.chosen(entries, named)
        if not ids:
            report.error = f"{endpoint.where('/v1/models')} lists no model to test"
            return report
        bar = Bar(len(ids), progress)
        gate = asyncio.Semaphore(concurrency)

        async def one(model: str) -> ModelReport:
            async with gate:
                return await test_model(endpoint, model, by_id.get(model), bar)

        try:
            report.models = list(await asyncio.gather(*(one(m) for m in ids)))
        finally:
            bar.close()
    return report
