"""Memory as the machine sees it, for /metrics: each running model's estimate (from config.yaml's
metadata, written by `halogen build` from halogen.lock) beside its process's PSS, the budget, the
pod's cgroup and, on AMD GPUs, the GTT pool that unified-memory APUs such as Strix Halo load
models into. A model whose PSS passes its estimate by more than MARGIN is logged once per process.

The budget reaches the proxy as HALOGEN_MEMORY_BUDGET (bytes), which the Deployment sets.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric

from halogen.runtime.base import locked
from halogen.runtime.process.upstream import Upstream

BUDGET_ENV = "HALOGEN_MEMORY_BUDGET"
MARGIN = 0.15
MiB = 1024 * 1024


def _read_int(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def pss(pid: int, proc: Path = Path("/proc")) -> int | None:
    """The process's proportional set size in bytes (/proc/PID/smaps_rollup)."""
    try:
        for line in (proc / str(pid) / "smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def cgroup_memory(
    proc: Path = Path("/proc"), root: Path = Path("/sys/fs/cgroup")
) -> tuple[int | None, int | None]:
    """(memory.current, memory.max) of this process's cgroup; cgroup v1's usage and limit when
    that is what the node runs. None where unreadable or unlimited."""
    try:
        lines = (proc / "self" / "cgroup").read_text().splitlines()
    except OSError:
        return None, None
    for line in lines:
        _, controllers, path = line.split(":", 2)
        rel = path.lstrip("/")
        if controllers == "":
            folder = root / rel
            if (folder / "memory.current").exists():
                return _read_int(folder / "memory.current"), _read_int(folder / "memory.max")
        elif "memory" in controllers.split(","):
            folder = root / "memory" / rel
            limit = _read_int(folder / "memory.limit_in_bytes")
            unlimited = limit is not None and limit >= 1 << 62
            return _read_int(folder / "memory.usage_in_bytes"), None if unlimited else limit
    return None, None


@dataclass(frozen=True)
class Card:
    """One DRM card as amdgpu's sysfs shows it; None where a file is absent or unreadable."""

    name: str  # card0, card1, ...
    vendor: str  # the PCI vendor id, 0x1002 for AMD
    product: str
    busy_percent: int | None
    vram_used: int | None
    vram_total: int | None
    gtt_used: int | None
    gtt_total: int | None
    temp_millic: int | None  # hwmon temp1_input
    power_microw: int | None  # hwmon power1_average
    power_cap_microw: int | None  # hwmon power1_cap


def _text(path: Path) -> str:
    try:
        return path.read_text().strip()
    except (OSError, UnicodeDecodeError):
        return ""


def cards(drm: Path = Path("/sys/class/drm")) -> list[Card]:
    """Every `cardN` under `drm` (not its connectors, `card0-DP-1`), in number order: the one
    reader of amdgpu's sysfs for /metrics and /api/performance."""
    found = [c for c in drm.glob("card*") if c.name[4:].isdigit()]
    out = []
    for card in sorted(found, key=lambda c: int(c.name[4:])):
        device = card / "device"
        hwmon = next(iter(sorted(device.glob("hwmon/hwmon*"))), None)

        def sensor(name: str, hwmon: Path | None = hwmon) -> int | None:
            return None if hwmon is None else _read_int(hwmon / name)

        out.append(
            Card(
                name=card.name,
                vendor=_text(device / "vendor").lower(),
                product=_text(device / "product_name"),
                busy_percent=_read_int(device / "gpu_busy_percent"),
                vram_used=_read_int(device / "mem_info_vram_used"),
                vram_total=_read_int(device / "mem_info_vram_total"),
                gtt_used=_read_int(device / "mem_info_gtt_used"),
                gtt_total=_read_int(device / "mem_info_gtt_total"),
                temp_millic=sensor("temp1_input"),
                power_microw=sensor("power1_average"),
                power_cap_microw=sensor("power1_cap"),
            )
        )
    return out


def gtt(drm: Path = Path("/sys/class/drm")) -> dict[str, tuple[int, int]]:
    """amdgpu's GTT (used, total) per card, from sysfs mem_info_gtt_*."""
    return {
        c.name: (c.gtt_used, c.gtt_total)
        for c in cards(drm)
        if c.gtt_used is not None and c.gtt_total is not None
    }


def budget_from_env() -> int | None:
    value = os.environ.get(BUDGET_ENV, "")
    return int(value) if value.isdigit() else None


@dataclass
class Observer:
    budget: int | None
    log: Callable[[str], None]
    proc: Path = Path("/proc")
    cgroup_root: Path = Path("/sys/fs/cgroup")
    drm: Path = Path("/sys/class/drm")
    _warned: set[tuple[str, int]] = field(default_factory=set)

    def families(self, upstreams: Iterable[Upstream]) -> list[Metric]:
        """The gauges, read now: a series only where its value is known."""
        estimates: dict[str, int] = {}
        measured: dict[str, int] = {}
        for upstream in upstreams:
            estimate = locked.memory(upstream.runnable)
            if estimate is not None:
                estimates[upstream.id] = estimate
            pid = upstream.pid
            used = pss(pid, self.proc) if pid is not None else None
            if used is None:
                continue
            measured[upstream.id] = used
            if (
                estimate is not None
                and used > estimate * (1 + MARGIN)
                and (upstream.id, pid) not in self._warned
            ):
                self._warned.add((upstream.id, pid))  # type: ignore[arg-type]
                self.log(
                    f"model {upstream.id!r} uses {used / MiB:.0f} MiB (PSS of pid {pid}), more than "
                    f"{MARGIN:.0%} over its estimate of {estimate / MiB:.0f} MiB: the budget may not hold"
                )
        out = _gauges(
            "halogen_model_memory_estimate_bytes",
            "What halogen build estimated the running model holds (from halogen.lock).",
            estimates,
        )
        out += _gauges("halogen_model_memory_pss_bytes", "The running model's process PSS.", measured)
        current, limit = cgroup_memory(self.proc, self.cgroup_root)
        single = (
            ("halogen_memory_budget_bytes", "The memory the models may hold together.", self.budget),
            ("halogen_cgroup_memory_current_bytes", "The pod's cgroup memory.current.", current),
            ("halogen_cgroup_memory_max_bytes", "The pod's cgroup memory.max.", limit),
        )
        for name, help_text, value in single:
            if value is not None:
                out.append(GaugeMetricFamily(name, help_text, value=value))
        pools = gtt(self.drm)
        out += _gauges(
            "halogen_gpu_gtt_used_bytes",
            "amdgpu GTT in use (mem_info_gtt_used).",
            {k: v[0] for k, v in pools.items()},
            "card",
        )
        out += _gauges(
            "halogen_gpu_gtt_total_bytes",
            "amdgpu GTT size (mem_info_gtt_total).",
            {k: v[1] for k, v in pools.items()},
            "card",
        )
        return out


def _gauges(name: str, help_text: str, values: Mapping[str, int], label: str = "model") -> list[Metric]:
    if not values:
        return []
    family = GaugeMetricFamily(name, help_text, labels=[label])
    for key in sorted(values):
        family.add_metric([key], values[key])
    return [family]


OBSERVER = web.AppKey("observer", Observer)
