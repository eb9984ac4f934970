"""The host's performance samples and hardware for llama-swap's UI (`/api/performance`,
`/api/hardware`; internal/perf and internal/hw, llama-swap): CPU per core, memory, swap, load
and network from /proc, AMD GPUs from amdgpu's sysfs (`observed.cards`, the reader /metrics uses),
NVIDIA GPUs from `nvidia-smi` when it is installed. Samples are kept for an hour, as llama-swap's
ring (ringCapacity in internal/perf/monitor.go)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import platform
import shutil
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from halogen.runtime.apis.observed import cards
from halogen.runtime.base.inflight import rfc3339

MB = 1024 * 1024
AMD_VENDORS = ("0x1002", "0x1022")
NVIDIA_QUERY = "index,name,uuid,temperature.gpu,utilization.gpu,memory.used,memory.total,fan.speed,power.draw"


def cpu_times(proc: Path) -> list[tuple[int, int]]:
    """(busy, total) jiffies per core, from /proc/stat's `cpuN` lines."""
    out = []
    for line in (proc / "stat").read_text().splitlines():
        name, *values = line.split()
        if not (name.startswith("cpu") and name[3:].isdigit()):
            continue
        numbers = [int(v) for v in values[:8]]
        idle = numbers[3] + (numbers[4] if len(numbers) > 4 else 0)  # idle + iowait
        out.append((sum(numbers) - idle, sum(numbers)))
    return out


def utilisation(before: Sequence[tuple[int, int]], after: Sequence[tuple[int, int]]) -> list[float]:
    """Percent busy per core between two readings (gopsutil's cpu.Percent(0, true))."""
    out = []
    for (busy0, total0), (busy1, total1) in zip(before, after, strict=False):
        span = total1 - total0
        out.append(round(100.0 * (busy1 - busy0) / span, 2) if span > 0 else 0.0)
    return out


def meminfo(proc: Path) -> dict[str, int]:
    """/proc/meminfo in bytes."""
    out = {}
    for line in (proc / "meminfo").read_text().splitlines():
        key, _, rest = line.partition(":")
        parts = rest.split()
        if parts and parts[0].isdigit():
            out[key] = int(parts[0]) * (1024 if parts[1:] == ["kB"] else 1)
    return out


def network(proc: Path) -> list[dict[str, Any]]:
    """Bytes received and sent per interface but `lo`, from /proc/net/dev."""
    out = []
    for line in (proc / "net" / "dev").read_text().splitlines()[2:]:
        name, _, rest = line.partition(":")
        values = rest.split()
        if name.strip() == "lo" or len(values) < 9:
            continue
        out.append({"name": name.strip(), "bytes_recv": int(values[0]), "bytes_sent": int(values[8])})
    return out


def sys_stat(proc: Path, per_core: list[float], moment: float) -> dict[str, Any]:
    """SysStat (internal/perf/types.go): memory `used` as gopsutil counts it (total - available)."""
    mem = meminfo(proc)
    total, available = mem.get("MemTotal", 0), mem.get("MemAvailable", mem.get("MemFree", 0))
    swap_total = mem.get("SwapTotal", 0)
    load = (proc / "loadavg").read_text().split()
    return {
        "timestamp": rfc3339(moment),
        "cpu_util_per_core": per_core,
        "mem_total_mb": total // MB,
        "mem_used_mb": (total - available) // MB,
        "mem_free_mb": mem.get("MemFree", 0) // MB,
        "swap_total_mb": swap_total // MB,
        "swap_used_mb": (swap_total - mem.get("SwapFree", 0)) // MB,
        "load_avg_1": float(load[0]),
        "load_avg_5": float(load[1]),
        "load_avg_15": float(load[2]),
        "net_io": network(proc),
    }


def amd_stats(drm: Path, moment: float) -> list[dict[str, Any]]:
    """GpuStat per amdgpu card: busy percent, VRAM and GTT together as its memory (an APU's
    models live in GTT), hwmon's temperature and average power."""
    out = []
    for index, card in enumerate(c for c in cards(drm) if c.vendor in AMD_VENDORS):
        used = (card.vram_used or 0) + (card.gtt_used or 0)
        total = (card.vram_total or 0) + (card.gtt_total or 0)
        out.append(
            {
                "timestamp": rfc3339(moment),
                "id": index,
                "name": card.product or card.name,
                "uuid": "",
                "temp_c": (card.temp_millic or 0) // 1000,
                "vram_temp_c": 0,
                "gpu_util_pct": float(card.busy_percent or 0),
                "mem_util_pct": round(100.0 * used / total, 2) if total else 0.0,
                "mem_used_mb": used // MB,
                "mem_total_mb": total // MB,
                "fan_speed_pct": 0.0,
                "power_draw_w": (card.power_microw or 0) / 1e6,
            }
        )
    return out


def _number(text: str) -> float:
    try:
        return float(text.strip())
    except ValueError:
        return 0.0  # "[N/A]", "[Not Supported]"


def nvidia_line(line: str, moment: float) -> dict[str, Any] | None:
    """ParseNvidiaSmiLine (internal/perf/gpu_parse.go): one CSV row of NVIDIA_QUERY."""
    fields = line.split(",")
    if len(fields) < 9:
        return None
    used, total = int(_number(fields[5])), int(_number(fields[6]))
    return {
        "timestamp": rfc3339(moment),
        "id": int(_number(fields[0])),
        "name": fields[1].strip(),
        "uuid": fields[2].strip(),
        "temp_c": int(_number(fields[3])),
        "vram_temp_c": 0,
        "gpu_util_pct": _number(fields[4]),
        "mem_util_pct": used / total * 100 if total > 0 else 0.0,
        "mem_used_mb": used,
        "mem_total_mb": total,
        "fan_speed_pct": _number(fields[7]),
        "power_draw_w": _number(fields[8]),
    }


async def nvidia_stats(moment: float) -> list[dict[str, Any]]:
    """nvidia-smi's GPUs; [] when it is not installed or fails (quietly: most hosts have none)."""
    path = shutil.which("nvidia-smi")
    if path is None:
        return []
    try:
        child = await asyncio.create_subprocess_exec(
            path,
            f"--query-gpu={NVIDIA_QUERY}",
            "--format=csv,noheader,nounits",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
        )
        out, _ = await asyncio.wait_for(child.communicate(), 10)
    except (OSError, TimeoutError):
        return []
    rows = (nvidia_line(line, moment) for line in out.decode(errors="replace").splitlines())
    return [row for row in rows if row is not None]


@dataclass
class Sampler:
    """Samples every `every` seconds, an hour of them kept."""

    every: float
    proc: Path = Path("/proc")
    drm: Path = Path("/sys/class/drm")
    sys_stats: deque[dict[str, Any]] = field(init=False)
    gpu_stats: deque[list[dict[str, Any]]] = field(init=False)
    _cores: list[tuple[int, int]] = field(default_factory=list)

    def __post_init__(self) -> None:
        keep = max(1, int(3600 // self.every))
        self.sys_stats = deque(maxlen=keep)
        self.gpu_stats = deque(maxlen=keep)

    async def sample(self) -> None:
        moment = time.time()
        cores = cpu_times(self.proc)
        per_core = utilisation(self._cores, cores) if self._cores else [0.0] * len(cores)
        self._cores = cores
        self.sys_stats.append(sys_stat(self.proc, per_core, moment))
        self.gpu_stats.append(amd_stats(self.drm, moment) + await nvidia_stats(moment))

    async def run(self) -> None:
        while True:
            with contextlib.suppress(OSError, ValueError, IndexError):
                await self.sample()
            await asyncio.sleep(self.every)

    def after(self, moment: float | None) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """The samples taken after `moment` (all for None): sys_stats, and gpu_stats flat."""
        sys_rows = list(self.sys_stats)
        gpu_rows = [row for batch in self.gpu_stats for row in batch]
        if moment is None:
            return sys_rows, gpu_rows
        cut = rfc3339(moment)  # same format and zone: compares as text
        return [r for r in sys_rows if r["timestamp"] > cut], [r for r in gpu_rows if r["timestamp"] > cut]


# --- /api/hardware: HardwareSnapshot (internal/hw/types.go), taken once at start --------------

_ARCH = {"x86_64": ("x86_64", None), "amd64": ("x86_64", "amd64"), "aarch64": ("arm64", "aarch64")}


def _cpu(proc: Path) -> dict[str, Any]:
    vendor = model = None
    sockets: set[str] = set()
    cores: set[tuple[str, str]] = set()
    logical = 0
    physical_id = ""
    for line in (proc / "cpuinfo").read_text().splitlines():
        key, _, value = (part.strip() for part in line.partition(":"))
        if key == "processor":
            logical += 1
        elif key == "vendor_id" and vendor is None:
            vendor = value or None
        elif key == "model name" and model is None:
            model = value or None
        elif key == "physical id":
            physical_id = value
            sockets.add(value)
        elif key == "core id":
            cores.add((physical_id, value))
    return {
        "vendor": vendor,
        "model": model,
        "socket_count": len(sockets) or None,
        "physical_core_count": len(cores) or None,
        "logical_thread_count": logical or None,
    }


def _os_release() -> tuple[str | None, str | None]:
    fields = {}
    for path in (Path("/etc/os-release"), Path("/usr/lib/os-release")):
        if path.exists():
            for line in path.read_text().splitlines():
                key, _, value = line.partition("=")
                fields[key] = value.strip().strip('"')
            break
    return fields.get("ID") or None, fields.get("VERSION_ID") or None


def hardware(
    proc: Path = Path("/proc"), drm: Path = Path("/sys/class/drm"), version: str = ""
) -> dict[str, Any]:
    machine = platform.machine()
    arch, raw = _ARCH.get(machine, ("other", machine))
    name, os_version = _os_release()
    container = Path("/.dockerenv").exists() or Path("/run/.containerenv").exists()
    total = meminfo(proc).get("MemTotal", 0)
    accelerators = []
    for index, card in enumerate(c for c in cards(drm) if c.vendor in (*AMD_VENDORS, "0x10de")):
        vram = card.vram_total or 0
        accelerators.append(
            {
                "index": index,
                "kind": "gpu",
                "vendor": "NVIDIA" if card.vendor == "0x10de" else "AMD",
                "model": card.product or None,
                "architecture": None,
                "memory": {"kind": "dedicated" if vram else "shared_system", "capacity_bytes": vram or None},
                "driver": None,
                "power_limit_watts": card.power_cap_microw / 1e6 if card.power_cap_microw else None,
            }
        )
    return {
        "schema_version": 1,
        "captured_at": rfc3339(time.time()),
        "capture": {
            "scope": "inference_host",
            "method": "detected",
            "detector": {"name": "halogen", "version": version},
        },
        "architecture": {"name": arch, "raw_name": raw},
        "operating_system": {
            "family": "linux",
            "name": name,
            "version": os_version,
            "kernel": os.uname().release,
        },
        "environment": {"kind": "container" if container else "unknown", "name": None, "version": None},
        "cpu": _cpu(proc),
        "memory": {"capacity_bytes": total},
        "accelerators": accelerators,
    }
