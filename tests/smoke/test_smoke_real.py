"""`halogen smoke` as a deploy check: a built site served by `halogen serve` with the real
llama-server and SmolLM2 (a chat model and the same GGUF as an embedding model), and one model
whose GGUF file is missing."""

from __future__ import annotations

import json
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import junitparser
import pytest
import yaml

from tests.runtime.harness import free_port_run, free_ports
from tests.runtime.processes import stop_serving, wait_healthy

from .run import HALOGEN, PATIENCE, environment

pytestmark = [pytest.mark.real, pytest.mark.slow]
MODELS = {
    "smol": {"name": "SmolLM2", "contextSize": 2048},
    # llama-server serves /v1/embeddings with a pooling; `capabilities` says it is one.
    "smol-embed": {
        "contextSize": 512,
        "args": ["--embeddings", "--pooling", "mean"],
        "capabilities": ["embedding"],
    },
    "gone": {"file": "mine/gone.gguf", "contextSize": 2048},
}


def _site(root: Path, gguf: str) -> Path:
    (root / "models.d").mkdir(parents=True)
    site = {
        "deployment": {
            "name": "smol",
            "namespace": "ai",
            "image": {"tag": "0.1.0"},
            "models": {"hostPath": "/var/lib/models", "mountPath": "/models"},
            "resources": {"limits": {"memory": "4Gi"}},
        },
        "llamaSwap": {"healthCheckTimeout": 120, "startPort": free_port_run(len(MODELS))},
        "backends": {
            "cpu": {
                "binary": "/usr/local/bin/llama-server",
                "args": ["--n-gpu-layers", "0", "--threads", "1"],
            }
        },
    }
    (root / "halogen.yaml").write_text(yaml.safe_dump(site, sort_keys=False))
    for model_id, data in MODELS.items():
        model = {"file": gguf, **data}
        (root / "models.d" / f"{model_id}.yaml").write_text(yaml.safe_dump(model, sort_keys=False))
    built = subprocess.run(
        [str(HALOGEN), "build"], cwd=root, capture_output=True, text=True, timeout=PATIENCE
    )
    assert built.returncode == 0, built.stdout + built.stderr
    return root


@pytest.fixture(scope="module")
def served(
    tmp_path_factory: pytest.TempPathFactory, llama_server: Path, smollm2_gguf: Path
) -> Iterator[tuple[str, Path]]:
    """The site's URL and folder, served on a workstation as the README shows."""
    root = _site(tmp_path_factory.mktemp("smoke") / "site", smollm2_gguf.name)
    (port,) = free_ports(1)
    log = root.parent / "serve.log"
    argv = [
        str(HALOGEN),
        "serve",
        "--models-dir",
        str(smollm2_gguf.parent),
        "--llama-server",
        str(llama_server),
        "--listen",
        f"127.0.0.1:{port}",
    ]
    with log.open("wb") as out:
        process = subprocess.Popen(argv, cwd=root, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(process, url, lambda: log.read_text(errors="replace"))
        yield url, root
    finally:
        stop_serving(process)


def smoke(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    ran = subprocess.run(
        [str(HALOGEN), "smoke", *args],
        capture_output=True,
        text=True,
        timeout=PATIENCE * 4,
        cwd=cwd,
        env=environment(),
    )
    assert "Traceback" not in ran.stdout + ran.stderr, ran.stderr
    return ran


def unload(url: str) -> None:
    request = urllib.request.Request(url + "/unload", method="POST")
    with urllib.request.urlopen(request, timeout=PATIENCE) as response:
        assert response.status == 200


def test_halogen_smoke_url_passes_the_served_models_and_names_the_one_whose_file_is_missing(
    served: tuple[str, Path],
) -> None:
    url, root = served
    ran = smoke(url, cwd=root / "models.d")  # as the README shows it, from inside the site
    assert ran.returncode == 1, ran.stdout + ran.stderr
    assert ran.stderr == ""  # a pipe: no progress bar, and the table says what failed
    rows = {line.split()[0]: line.split() for line in ran.stdout.splitlines()[1:4]}
    assert rows["smol"][1] == "chat" and rows["smol"][-2:] == ["ok", "4/4"]
    assert rows["smol-embed"][1] == "embedding" and rows["smol-embed"][-2:] == ["ok", "1/1"]
    assert rows["gone"][-2:] == ["FAILED", "0/4"]
    assert f"2 of 3 model(s) passed at {url}" in ran.stdout
    (why,) = [line for line in ran.stdout.splitlines() if line.startswith("gone: ")]
    assert why.startswith(
        "gone: openai-chat, openai-chat-stream, ollama-chat, ollama-chat-stream: HTTP 503: "
    )
    assert "mine/gone.gguf is not on disk" in why


def test_the_json_report_has_each_models_load_time_ttft_and_speeds(served: tuple[str, Path]) -> None:
    url, _ = served
    unload(url)
    ran = smoke(url, "smol", "smol-embed", "--format", "json")
    assert ran.returncode == 0, ran.stdout + ran.stderr
    report = json.loads(ran.stdout)
    assert report["passed"] is True and report["error"] is None
    smol, embed = report["models"]
    assert (smol["id"], smol["kind"], embed["id"], embed["kind"]) == (
        "smol",
        "chat",
        "smol-embed",
        "embedding",
    )
    # Sane, not fast: bounds a working server meets on any machine.
    assert smol["wasLoaded"] is False and smol["loadFrom"] == "running"
    assert 0 < smol["loadSeconds"] < PATIENCE
    assert 0 < smol["ttftSeconds"] < PATIENCE
    assert smol["speedFrom"] == "timings"
    assert 1 < smol["promptTokensPerSecond"] < 1e6 and 1 < smol["generationTokensPerSecond"] < 1e6
    assert all(c["passed"] and c["status"] == 200 for c in smol["checks"])
    # An embedding answers within moments of the load: /running, asked every 50 ms, may not
    # have said ready by then, and the load is timed to the first byte instead.
    assert embed["loadFrom"] in ("running", "first-byte") and 0 < embed["loadSeconds"] < PATIENCE
    assert embed["ttftSeconds"] is None and embed["promptTokensPerSecond"] is None


def test_the_junit_report_read_by_junitparser_fails_only_the_missing_model(
    served: tuple[str, Path], tmp_path: Path
) -> None:
    url, _ = served
    report = tmp_path / "smoke.xml"
    ran = smoke(url, "gone", "smol", "--format", "junit", "--output", str(report))
    assert ran.returncode == 1 and ran.stdout == ""
    assert (
        "halogen: failed: gone: openai-chat, openai-chat-stream, ollama-chat, ollama-chat-stream: HTTP 503"
        in ran.stderr
    )
    suites = {suite.name: suite for suite in junitparser.JUnitXml.fromfile(str(report))}
    assert (suites["gone"].tests, suites["gone"].failures) == (4, 4)
    assert (suites["smol"].tests, suites["smol"].failures) == (4, 0)
    for case in suites["gone"]:
        (failure,) = case.result
        assert failure.message.startswith("HTTP 503: model 'gone' is not available yet")
    properties = {p.name: p.value for p in suites["smol"].properties()}
    assert properties["kind"] == "chat" and float(properties["ttftSeconds"]) > 0
