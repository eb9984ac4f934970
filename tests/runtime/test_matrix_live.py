"""The matrix router, live: `halogen serve` with fake upstreams starts and stops what the
solver decides."""

from __future__ import annotations

from pathlib import Path

from .harness import Site, process_exists, serving


async def test_the_matrix_decides_which_models_run_together(tmp_path: Path) -> None:
    site = Site(tmp_path)
    for mid in ("gemma", "qwen", "tts", "embed", "big"):
        site.fake(mid)
    site.top["routing"] = {
        "router": {
            "use": "matrix",
            "settings": {
                "matrix": {
                    "vars": {"g": "gemma", "q": "qwen"},
                    "evict_costs": {"tts": 50},
                    "sets": {"voice": "(g | q) & tts", "search": "(g | q) & embed", "full": "big"},
                }
            },
        }
    }
    async with serving(site.write()) as proxy:
        steps = [
            ("gemma", {"gemma"}),
            ("tts", {"gemma", "tts"}),  # voice
            ("qwen", {"qwen", "tts"}),  # voice again: stopping gemma (1) beats stopping tts (50)
            ("embed", {"qwen", "embed"}),  # search: tts stops, qwen stays
            ("big", {"big"}),  # alone
            ("gemma", {"gemma"}),
        ]
        for model, expected in steps:
            assert await proxy.served_by(model) == model
            assert set(await proxy.running()) == expected, model
        for mid, fake in site.fakes.items():
            alive = [pid for pid in fake.pids() if process_exists(pid)]
            assert len(alive) == (1 if mid == "gemma" else 0), mid
