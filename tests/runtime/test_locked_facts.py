"""The lock's facts end to end: `halogen lock` reads the real SmolLM2 GGUF, `halogen build` writes
its facts into config.yaml, `halogen serve` runs the real llama-server, and the official `ollama`
client's show, list and ps report what the header states (the model file states none of it)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import ollama
import pytest
import yaml

from halogen.compiler.site.lock import read_lock

from .harness import free_port_run
from .processes import Serving, halogen_serve

pytestmark = [pytest.mark.real, pytest.mark.slow]

SMOL = "HuggingFaceTB/SmolLM2-135M-Instruct.Q4_1.gguf"
CONTEXT = 1024


def _halogen(*args: str | Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "halogen", *map(str, args)], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr


@pytest.fixture(scope="module")
def served(
    tmp_path_factory: pytest.TempPathFactory, llama_server: Path, smollm2_gguf: Path
) -> Iterator[Serving]:
    root = tmp_path_factory.mktemp("locked")
    models = root / "models"
    (models / SMOL).parent.mkdir(parents=True)
    # A hard link: the pod sees only the models folder, so a symbolic link out of it is refused.
    os.link(smollm2_gguf, models / SMOL)
    site = root / "site"
    (site / "models.d").mkdir(parents=True)
    (site / "halogen.yaml").write_text(
        yaml.safe_dump(
            {
                "deployment": {
                    "name": "locked",
                    "image": {"tag": "1.0.0", "base": "custom"},
                    "models": {"hostPath": str(models), "mountPath": "/models"},
                },
                "llamaSwap": {"healthCheckTimeout": 60, "startPort": free_port_run(1)},
                "backends": {"cpu": {"binary": str(llama_server), "args": ["-t", "1", "-ngl", "0"]}},
            }
        )
    )
    # No metadata at all: every fact below comes from the GGUF header through halogen.lock.
    (site / "models.d" / "smollm2.yaml").write_text(f"file: {SMOL}\ncontextSize: {CONTEXT}\n")
    _halogen("lock", "--src", site)
    _halogen("build", "--src", site)
    # The pod mounts hostPath at /models; here the proxy runs where the host folder is.
    config = site / "out" / "config.yaml"
    config.write_text(config.read_text().replace("-m /models/", f"-m {models}/"))
    with halogen_serve(config, root / "serve.log", "--no-watch") as serving:
        yield serving


def test_show_reports_the_headers_model_info_and_details(served: Serving) -> None:
    shown = ollama.Client(host=served.url, timeout=120).show("smollm2")
    assert shown.modelinfo is not None
    assert shown.modelinfo["general.architecture"] == "llama"
    assert shown.modelinfo["general.parameter_count"] == 134_515_008
    assert shown.modelinfo["llama.context_length"] == 8192  # trained, not the configured 1024
    assert shown.modelinfo["llama.attention.head_count_kv"] == 3
    assert shown.modelinfo["general.file_type"] == 3  # LLAMA_FTYPE_MOSTLY_Q4_1
    assert shown.parameters == f"num_ctx {CONTEXT}"  # loaded with -c 1024
    assert shown.details is not None
    assert (shown.details.family, shown.details.parameter_size, shown.details.quantization_level) == (
        "llama",
        "134.52M",
        "Q4_1",
    )


def test_list_reports_the_locked_size_and_details(served: Serving, smollm2_gguf: Path) -> None:
    (entry,) = ollama.Client(host=served.url, timeout=120).list().models
    assert entry.model == "smollm2:latest"
    assert entry.size == smollm2_gguf.stat().st_size
    assert entry.details is not None
    assert (entry.details.format, entry.details.parameter_size, entry.details.quantization_level) == (
        "gguf",
        "134.52M",
        "Q4_1",
    )


def test_ps_reports_the_loaded_context_and_the_memory_estimate(served: Serving) -> None:
    client = ollama.Client(host=served.url, timeout=120)
    client.generate("smollm2", "Hi", options={"num_predict": 1})
    (running,) = client.ps().models
    assert running.model == "smollm2:latest"
    assert running.context_length == CONTEXT
    config = yaml.safe_load((Path(served.log).parent / "site" / "out" / "config.yaml").read_text())
    estimate = config["models"]["smollm2"]["metadata"].get("memory")
    assert running.size == (
        estimate or read_lock(Path(served.log).parent / "site" / "halogen.lock").files[SMOL].size
    )
    assert running.size_vram == 0  # -ngl 0: every layer on the CPU


def test_metrics_show_the_running_models_estimate_beside_its_measured_pss(served: Serving) -> None:
    import httpx

    from .harness import metric

    ollama.Client(host=served.url, timeout=120).generate("smollm2", "Hi", options={"num_predict": 1})
    text = httpx.get(f"{served.url}/metrics").text
    estimate = int(metric(text, "halogen_model_memory_estimate_bytes")["smollm2"])
    measured = int(metric(text, "halogen_model_memory_pss_bytes")["smollm2"])
    config = yaml.safe_load((Path(served.log).parent / "site" / "out" / "config.yaml").read_text())
    assert estimate == config["models"]["smollm2"]["metadata"]["memory"]
    assert measured > 0  # how close they are is bench/memory.py's question, not a test's


def test_v1_models_carries_the_locked_facts_through_the_openai_client(served: Serving) -> None:
    import openai

    client = openai.OpenAI(base_url=f"{served.url}/v1", api_key="unused", timeout=60)
    (model,) = client.models.list().data
    meta = (model.model_extra or {})["meta"]["llamaswap"]
    assert (meta["architecture"], meta["parameterSize"], meta["quantizationLevel"]) == (
        "llama",
        "134.52M",
        "Q4_1",
    )
    assert meta["contextLength"] == 8192
    assert meta["modelInfo"]["llama.block_count"] == 30
