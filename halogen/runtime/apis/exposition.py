"""/metrics as prometheus_client writes it: the app's own `CollectorRegistry` (halogen's counters
and histograms, and collectors that read the models' state and memory when scraped), then the
running llama-servers' own metrics under a `model` label (`federation`)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric

from halogen.runtime.apis import federation
from halogen.runtime.apis.observed import Observer
from halogen.runtime.forward.context import Runtime
from halogen.runtime.process.upstream import State

CONTENT_TYPE = CONTENT_TYPE_LATEST
REGISTRY = web.AppKey("metrics_registry", CollectorRegistry)


class _Counted:
    """halogen's counters and histograms (`base.metrics.Metrics`), through the Swapper, which
    keeps them across reloads."""

    def __init__(self, runtime: Runtime) -> None:
        self._runtime = runtime

    def collect(self) -> Iterator[Metric]:
        yield from self._runtime.metrics.collect()


class _ModelState:
    """Each model's process and requests, read when scraped: running, in flight, queued."""

    def __init__(self, runtime: Runtime) -> None:
        self._runtime = runtime

    def collect(self) -> Iterator[Metric]:
        swapper = self._runtime.swapper
        running, in_flight, queued = swapper.active(), swapper.in_flight(), swapper.queued()
        ids = sorted(self._runtime.metrics.known() | running | set(in_flight))
        rows: tuple[tuple[str, str, Callable[[str], int]], ...] = (
            ("halogen_model_running", "1 while the model's process runs.", lambda m: int(m in running)),
            (
                "halogen_requests_in_flight",
                "Requests being served by the model or waiting for it.",
                lambda m: in_flight.get(m, 0),
            ),
            (
                "halogen_requests_queued",
                "Requests waiting in the queue for the model (not holding it yet).",
                lambda m: queued.get(m, 0),
            ),
        )
        for name, help_text, value in rows:
            family = GaugeMetricFamily(name, help_text, labels=["model"])
            for model_id in ids:
                family.add_metric([model_id], value(model_id))
            yield family


class _Memory:
    """The running models' memory beside their estimates, the budget, the cgroup and GTT."""

    def __init__(self, runtime: Runtime, observer: Observer) -> None:
        self._runtime = runtime
        self._observer = observer

    def collect(self) -> Iterator[Metric]:
        runtime = self._runtime
        # A model a reload removed is counted until its process stops; it has no upstream now.
        current = (m for m in sorted(runtime.swapper.active()) if m in runtime.resolved.models)
        yield from self._observer.families(runtime.swapper.upstream(m) for m in current)


def registry(runtime: Runtime, observer: Observer) -> CollectorRegistry:
    """The app's own registry: nothing in it is shared with another app in the process."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Counted(runtime))
    registry.register(_ModelState(runtime))
    registry.register(_Memory(runtime, observer))
    return registry


class _Joined:
    """A registry's families, then some more (a collector for `generate_latest`)."""

    def __init__(self, registry: CollectorRegistry, more: Iterable[Metric]) -> None:
        self._registry = registry
        self._more = more

    def collect(self) -> Iterator[Metric]:
        yield from self._registry.collect()
        yield from self._more


async def render(app: web.Application, runtime: Runtime) -> bytes:
    """The text of /metrics: every model has its counters (at 0 until counted), and the
    upstreams' series follow, fetched concurrently within `federation.TIMEOUT`."""
    swapper = runtime.swapper
    runtime.metrics.include([*swapper.active(), *swapper.in_flight()])
    upstreams = [
        swapper.upstream(model_id)
        for model_id in sorted(runtime.resolved.models)
        if swapper.slot(model_id).phase is State.READY
        and federation.scraped(swapper.upstream(model_id).runnable)
    ]
    upstream_families = await federation.scrape(upstreams) if upstreams else []
    return generate_latest(_Joined(app[REGISTRY], upstream_families))
