"""A site with SmolLM2 under two ids, locked (so the build writes each model's memory estimate)
and built, served by `halogen serve --models-dir --llama-server` as on a workstation: what the
browser tests and scripts/screenshots open."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import yaml

from tests.runtime.harness import free_ports
from tests.runtime.processes import Serving, halogen_serve

HALOGEN = Path(sys.executable).parent / "halogen"
GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
# memoryBudget: smol and smol-b fit together in it, smol-c with neither; the build writes the
# matrix of what fits, and the Deployment hands the budget to the proxy as HALOGEN_MEMORY_BUDGET.
BUDGET = 300 * 1024**2


def build_site(root: Path, smollm2: Path) -> Path:
    """The site's folder, with halogen.lock and out/ written by the installed command."""
    models = root / "gguf"
    models.mkdir(parents=True)
    os.link(smollm2, models / GGUF)
    site = root / "site"
    (site / "models.d").mkdir(parents=True)
    (start,) = free_ports(1)
    (site / "halogen.yaml").write_text(
        yaml.safe_dump(
            {
                "deployment": {
                    "name": "smol",
                    "namespace": "ai",
                    "image": {"tag": "0.1.0"},
                    "models": {"hostPath": "/var/lib/models", "mountPath": "/models"},
                    "resources": {"limits": {"memory": "4Gi"}},
                },
                "memoryBudget": "300Mi",
                "llamaSwap": {"healthCheckTimeout": 60, "startPort": start},
                "backends": {
                    "cpu": {
                        "binary": "/usr/local/bin/llama-server",
                        "args": ["--n-gpu-layers", "0", "--threads", "1"],
                    }
                },
            },
            sort_keys=False,
        )
    )
    for model_id, data in {
        "smol": {"name": "SmolLM2", "description": "A tiny chat model", "file": GGUF, "contextSize": 1024},
        "smol-b": {"name": "SmolLM2, shorter context", "file": GGUF, "contextSize": 512},
        "smol-c": {"name": "SmolLM2, longer context", "file": GGUF, "contextSize": 2048},
    }.items():
        (site / "models.d" / f"{model_id}.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    for argv in ([str(HALOGEN), "lock", "--models-dir", str(models)], [str(HALOGEN), "build"]):
        done = subprocess.run(argv, cwd=site, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stdout + done.stderr
    return site


def deployment_budget(site: Path) -> str:
    """HALOGEN_MEMORY_BUDGET as the built Deployment sets it for the proxy."""
    for document in yaml.safe_load_all((site / "out" / "deployment.yaml").read_text()):
        for container in document["spec"]["template"]["spec"]["containers"]:
            for variable in container.get("env", []):
                if variable["name"] == "HALOGEN_MEMORY_BUDGET":
                    return str(variable["value"])
    raise AssertionError("the Deployment sets no HALOGEN_MEMORY_BUDGET")


@contextlib.contextmanager
def served_site(root: Path, smollm2: Path, llama_server: Path) -> Iterator[Serving]:
    site = build_site(root, smollm2)
    before = os.environ.get("HALOGEN_MEMORY_BUDGET")
    os.environ["HALOGEN_MEMORY_BUDGET"] = deployment_budget(site)
    try:
        with halogen_serve(
            site / "out" / "config.yaml",
            root / "serve.log",
            "--no-watch",
            "--models-dir",
            str(root / "gguf"),
            "--llama-server",
            str(llama_server),
        ) as serving:
            yield serving
    finally:
        if before is None:
            os.environ.pop("HALOGEN_MEMORY_BUDGET", None)
        else:
            os.environ["HALOGEN_MEMORY_BUDGET"] = before
