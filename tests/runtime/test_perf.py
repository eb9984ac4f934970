"""/api/performance and /api/hardware's readers on fake /proc and sysfs trees in tmp_path, and the
routes on a real server."""

from __future__ import annotations

from pathlib import Path

from halogen.runtime.apis import perf
from halogen.runtime.apis.observed import cards, gtt

from .harness import Site, serving

GiB = 1024**3


def fake_drm(root: Path) -> Path:
    """An amdgpu APU (card1, with hwmon), an NVIDIA card without amdgpu's files (card0) and a
    connector (card1-DP-1), as /sys/class/drm shows them."""
    drm = root / "drm"
    amd = drm / "card1" / "device"
    (amd / "hwmon" / "hwmon3").mkdir(parents=True)
    for name, value in {
        "vendor": "0x1002",
        "product_name": "Radeon 8060S",
        "gpu_busy_percent": "37",
        "mem_info_vram_used": str(512 * 1024**2),
        "mem_info_vram_total": str(1 * GiB),
        "mem_info_gtt_used": str(20 * GiB),
        "mem_info_gtt_total": str(96 * GiB),
    }.items():
        (amd / name).write_text(value + "\n")
    (amd / "hwmon" / "hwmon3" / "temp1_input").write_text("54000\n")
    (amd / "hwmon" / "hwmon3" / "power1_average").write_text("42500000\n")
    (amd / "hwmon" / "hwmon3" / "power1_cap").write_text("120000000\n")
    nvidia = drm / "card0" / "device"
    nvidia.mkdir(parents=True)
    (nvidia / "vendor").write_text("0x10de\n")
    (drm / "card1-DP-1").mkdir()
    return drm


def fake_proc(root: Path, busy: int) -> Path:
    proc = root / "proc"
    (proc / "net").mkdir(parents=True, exist_ok=True)
    (proc / "stat").write_text(
        f"cpu  {busy * 2} 0 0 200 0 0 0 0 0 0\ncpu0 {busy} 0 0 100 0 0 0 0 0 0\ncpu1 0 0 50 {busy} 0 0 0 0 0 0\nintr 1\n"
    )
    (proc / "meminfo").write_text(
        "MemTotal:       16384000 kB\nMemFree:         4096000 kB\nMemAvailable:    8192000 kB\n"
        "SwapTotal:       2048000 kB\nSwapFree:        1024000 kB\n"
    )
    (proc / "loadavg").write_text("0.50 0.25 0.10 1/100 4242\n")
    (proc / "net" / "dev").write_text(
        "Inter-|   Receive |  Transmit\n face |bytes packets|bytes\n"
        "    lo: 100 1 0 0 0 0 0 0 100 1 0 0 0 0 0 0\n"
        "  eth0: 5000 10 0 0 0 0 0 0 7000 12 0 0 0 0 0 0\n"
    )
    (proc / "cpuinfo").write_text(
        "processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD Ryzen AI Max+ 395\nphysical id\t: 0\ncore id\t: 0\n\n"
        "processor\t: 1\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD Ryzen AI Max+ 395\nphysical id\t: 0\ncore id\t: 0\n"
    )
    return proc


def test_the_drm_reader_reads_amdgpu_cards_and_gtt_is_its_view(tmp_path: Path) -> None:
    drm = fake_drm(tmp_path)
    found = cards(drm)
    assert [c.name for c in found] == ["card0", "card1"]  # the connector is no card
    amd = found[1]
    assert (amd.busy_percent, amd.temp_millic, amd.power_microw) == (37, 54000, 42500000)
    assert found[0].busy_percent is None and found[0].gtt_used is None
    assert gtt(drm) == {"card1": (20 * GiB, 96 * GiB)}


def test_an_amd_apus_sample_counts_vram_and_gtt_as_its_memory(tmp_path: Path) -> None:
    (stat,) = perf.amd_stats(fake_drm(tmp_path), 0.0)
    assert stat == {
        "timestamp": "1970-01-01T00:00:00.000000Z",
        "id": 0,
        "name": "Radeon 8060S",
        "uuid": "",
        "temp_c": 54,
        "vram_temp_c": 0,
        "gpu_util_pct": 37.0,
        "mem_util_pct": round(100 * 20.5 / 97, 2),
        "mem_used_mb": 20 * 1024 + 512,
        "mem_total_mb": 97 * 1024,
        "fan_speed_pct": 0.0,
        "power_draw_w": 42.5,
    }
    assert perf.amd_stats(tmp_path / "absent", 0.0) == []


async def test_a_sample_reads_cpu_per_core_memory_swap_load_and_network(tmp_path: Path) -> None:
    sampler = perf.Sampler(5.0, proc=fake_proc(tmp_path, busy=100), drm=tmp_path / "none")
    await sampler.sample()
    fake_proc(tmp_path, busy=200)  # since: core 0 busy its 100 jiffies, core 1 idle its 100
    await sampler.sample()
    first, second = sampler.sys_stats
    assert first["cpu_util_per_core"] == [0.0, 0.0]
    assert second["cpu_util_per_core"] == [100.0, 0.0]
    assert (second["mem_total_mb"], second["mem_used_mb"], second["mem_free_mb"]) == (16000, 8000, 4000)
    assert (second["swap_total_mb"], second["swap_used_mb"]) == (2000, 1000)
    assert (second["load_avg_1"], second["load_avg_5"], second["load_avg_15"]) == (0.5, 0.25, 0.1)
    assert second["net_io"] == [{"name": "eth0", "bytes_recv": 5000, "bytes_sent": 7000}]
    assert list(sampler.gpu_stats) == [[], []]
    assert sampler.sys_stats.maxlen == 720  # an hour at 5 s


def test_an_nvidia_smi_line_parses_and_not_supported_fields_are_zero() -> None:
    row = perf.nvidia_line("0, NVIDIA GeForce RTX 4090, GPU-abc, 61, 87, 20000, 24564, [N/A], 310.5", 0.0)
    assert row is not None
    assert (row["id"], row["name"], row["uuid"], row["temp_c"]) == (
        0,
        "NVIDIA GeForce RTX 4090",
        "GPU-abc",
        61,
    )
    assert (row["gpu_util_pct"], row["mem_used_mb"], row["mem_total_mb"]) == (87.0, 20000, 24564)
    assert row["fan_speed_pct"] == 0.0 and row["power_draw_w"] == 310.5
    assert perf.nvidia_line("garbage", 0.0) is None


def test_the_hardware_snapshot_names_the_cpu_memory_and_gpus(tmp_path: Path) -> None:
    snapshot = perf.hardware(fake_proc(tmp_path, 1), fake_drm(tmp_path), version="9.9")
    assert snapshot["cpu"] == {
        "vendor": "AuthenticAMD",
        "model": "AMD Ryzen AI Max+ 395",
        "socket_count": 1,
        "physical_core_count": 1,
        "logical_thread_count": 2,
    }
    assert snapshot["memory"] == {"capacity_bytes": 16384000 * 1024}
    nvidia, amd = snapshot["accelerators"]
    assert nvidia["vendor"] == "NVIDIA" and nvidia["memory"] == {
        "kind": "shared_system",
        "capacity_bytes": None,
    }
    assert amd["model"] == "Radeon 8060S" and amd["power_limit_watts"] == 120.0
    assert amd["memory"] == {"kind": "dedicated", "capacity_bytes": GiB}


async def test_the_performance_route_filters_by_after_and_refuses_garbage(tmp_path: Path) -> None:
    site = Site(tmp_path)
    site.fake("m")
    async with serving(site.write()) as proxy:
        async with proxy.client.get("/api/performance") as response:
            assert response.status == 200
            body = await response.json()
        assert body["enabled"] is True and len(body["sys_stats"]) == 1
        taken = body["sys_stats"][0]["timestamp"]
        async with proxy.client.get("/api/performance", params={"after": taken}) as response:
            assert (await response.json())["sys_stats"] == []  # strictly after
        async with proxy.client.get(
            "/api/performance", params={"after": "2000-01-01T00:00:00+01:00"}
        ) as response:
            assert len((await response.json())["sys_stats"]) == 1
        for garbage in ("yesterday", "2026-13-01T00:00:00Z", "1700000000", "2026-01-01"):
            async with proxy.client.get("/api/performance", params={"after": garbage}) as response:
                assert response.status == 400, garbage
                assert await response.json() == {
                    "src": "llama-swap",
                    "error": "invalid 'after' timestamp, use RFC3339 format",
                }
        async with proxy.client.get("/api/hardware") as response:
            assert response.status == 200
            hardware = await response.json()
        assert hardware["schema_version"] == 1 and hardware["memory"]["capacity_bytes"] > 0


async def test_performance_disabled_answers_503_enabled_false(tmp_path: Path) -> None:
    site = Site(tmp_path, top={"performance": {"disabled": True}})
    site.fake("m")
    async with serving(site.write()) as proxy, proxy.client.get("/api/performance") as response:
        assert response.status == 503
        assert await response.json() == {"enabled": False}
