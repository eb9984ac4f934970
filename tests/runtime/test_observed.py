"""/metrics shows memory as the machine sees it: estimates, PSS, the budget, the cgroup, GTT."""

from __future__ import annotations

from pathlib import Path

import pytest
from prometheus_client import generate_latest

from halogen.runtime.apis import observed
from halogen.runtime.base.logs import Logs

from .harness import Joined, Site, metric, sample, serving


async def test_metrics_show_the_estimate_the_pss_and_the_budget_and_log_an_overrun_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(observed.BUDGET_ENV, str(120 * 2**30))
    site = Site(tmp_path)
    # The fake upstream is a Python process of some 20 MB: an estimate of 1 MiB is overrun.
    site.fake("small", metadata={"memory": 1024 * 1024})
    site.fake("unknown")
    site.top["groups"] = {"both": {"swap": False, "exclusive": False, "members": ["small", "unknown"]}}
    logs = Logs(echo_proxy=False)
    async with serving(site.write(), logs=logs) as proxy:
        for model in ("small", "unknown"):
            assert (await proxy.chat(model)).status == 200
        text = await proxy.metrics()
        assert metric(text, "halogen_model_memory_estimate_bytes") == {"small": "1048576"}
        pss = metric(text, "halogen_model_memory_pss_bytes")
        assert set(pss) == {"small", "unknown"} and all(int(v) > 1024 * 1024 for v in pss.values())
        assert sample(text, "halogen_memory_budget_bytes") == 120 * 2**30
        await proxy.metrics()
    warnings = [line for line in logs.history() if "over its estimate" in line]
    assert len(warnings) == 1, warnings
    assert "model 'small' uses" in warnings[0] and "estimate of 1 MiB" in warnings[0]


def test_cgroup_v2_current_and_max_are_read_and_max_means_unlimited(tmp_path: Path) -> None:
    proc, root = tmp_path / "proc", tmp_path / "cgroup"
    (proc / "self").mkdir(parents=True)
    (proc / "self" / "cgroup").write_text("0::/kubepods/pod1/c1\n")
    folder = root / "kubepods" / "pod1" / "c1"
    folder.mkdir(parents=True)
    (folder / "memory.current").write_text("123456\n")
    (folder / "memory.max").write_text("34359738368\n")
    assert observed.cgroup_memory(proc, root) == (123456, 34359738368)
    (folder / "memory.max").write_text("max\n")
    assert observed.cgroup_memory(proc, root) == (123456, None)


def test_cgroup_v1_usage_and_limit_are_read(tmp_path: Path) -> None:
    proc, root = tmp_path / "proc", tmp_path / "cgroup"
    (proc / "self").mkdir(parents=True)
    (proc / "self" / "cgroup").write_text("5:cpu:/\n4:memory:/pod/x\n0::/\n")
    folder = root / "memory" / "pod" / "x"
    folder.mkdir(parents=True)
    (folder / "memory.usage_in_bytes").write_text("777\n")
    (folder / "memory.limit_in_bytes").write_text("9223372036854771712\n")  # v1's "no limit"
    assert observed.cgroup_memory(proc, root) == (777, None)


def test_amdgpu_gtt_is_read_per_card_from_sysfs(tmp_path: Path) -> None:
    device = tmp_path / "card1" / "device"
    device.mkdir(parents=True)
    (device / "mem_info_gtt_used").write_text("1073741824\n")
    (device / "mem_info_gtt_total").write_text("133143986176\n")
    (tmp_path / "card0-eDP-1").mkdir()  # a connector, not a card
    assert observed.gtt(tmp_path) == {"card1": (1073741824, 133143986176)}
    families = observed.Observer(None, print, drm=tmp_path, proc=tmp_path / "none").families([])
    text = generate_latest(Joined(families)).decode()
    assert sample(text, "halogen_gpu_gtt_total_bytes", card="card1") == 133143986176
    assert "halogen_memory_budget_bytes" not in text  # no budget given: no series
