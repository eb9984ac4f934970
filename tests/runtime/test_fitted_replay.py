"""The fitted matrix at run time: `halogen build` fits the seed's five models plus gpt-oss-120b
(synthetic sparse headers, tests/gguf_shapes.py) to 120Gi, and a day of requests replayed through
`halogen serve`, with fake upstreams in place of llama-server, never has a combination running
that the matrix does not allow."""

from __future__ import annotations

import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.gguf_shapes import GPT_OSS_120B_MODEL, SEED, fitted_site

from .harness import fake_commands
from .processes import halogen_serve

pytestmark = [pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
GiB = 1024**3


def fitted_config(tmp: Path) -> dict[str, Any]:
    models = {**SEED, GPT_OSS_120B_MODEL[0]: GPT_OSS_120B_MODEL[1]}
    root = fitted_site(tmp, models)
    built = subprocess.run(
        [sys.executable, "-m", "halogen", "build", "--src", str(root)], capture_output=True, text=True
    )
    assert built.returncode == 0, built.stderr
    config: dict[str, Any] = yaml.safe_load((root / "out" / "config.yaml").read_text())
    return config


def test_a_replayed_day_never_runs_a_combination_outside_the_matrix(tmp_path: Path) -> None:
    config = fitted_config(tmp_path)
    matrix = config["routing"]["router"]["settings"]["matrix"]
    allowed = [{matrix["vars"][v] for v in dsl.split(" & ")} for dsl in matrix["sets"].values()]
    assert len(allowed) == 5
    # The built config, with each llama-server swapped for a fake on its own port.
    for model_id, fake in fake_commands(dict.fromkeys(config["models"], 0.05)).items():
        config["models"][model_id].update(fake)
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    rng = random.Random(7)
    ids = sorted(config["models"])
    sequence = [rng.choice(ids) for _ in range(40)]
    seen: list[frozenset[str]] = []
    with (
        halogen_serve(path, tmp_path / "serve.log", "--no-watch") as serving,
        httpx.Client(timeout=60) as client,
    ):
        for model in sequence:
            answer = client.post(
                f"{serving.url}/v1/chat/completions",
                json={"model": model, "messages": [{"role": "user", "content": "hi"}]},
            )
            assert answer.status_code == 200, answer.text
            assert answer.json()["served_by"] == model
            rows = client.get(f"{serving.url}/running").json()["running"]
            running = frozenset(row["model"] for row in rows)
            assert model in running
            assert any(running <= s for s in allowed), (model, sorted(running))
            seen.append(running)
    # The replay did exercise the matrix: models ran together, and the 120b was swapped against others.
    assert max(len(s) for s in seen) >= 4
    assert len(set(seen)) > 2
