"""`halogen serve --models-dir DIR --llama-server PATH`: a site's compiled out/config.yaml,
which names the pod's paths, served on a workstation; and the 503 for a missing file saying
how to get it (`halogen pull` for a model with a source, a copy for one without)."""

from __future__ import annotations

import functools
import subprocess
import sys
from pathlib import Path

import httpx
import openai
import pytest
import yaml

from halogen.commands.serve import config_of
from halogen.llamaswap import io
from halogen.runtime.base.logs import Logs
from halogen.runtime.process.model_files import FileMissing, pull_progress, require
from halogen.runtime.scheduling.swapper import Swapper
from halogen.runtime.serve.local import Local, sources_beside
from halogen.runtime.serve.reload import Watcher

from .harness import free_ports
from .processes import stop_serving, wait_healthy

HALOGEN = Path(sys.executable).parent / "halogen"
COMMIT = "0123456789abcdef0123456789abcdef01234567"


def _site(root: Path, gguf: str, start_port: int, mount: str = "/models") -> Path:
    """A site like the shipped one (a cpu backend at the image's llama-server, models under
    /models), with SmolLM2, a model with a source whose file is not there, and one without."""
    (root / "models.d").mkdir(parents=True)
    site = {
        "deployment": {
            "name": "smol",
            "namespace": "ai",
            "image": {"tag": "0.1.0"},
            "models": {"hostPath": "/var/lib/models", "mountPath": mount},
            "resources": {"limits": {"memory": "4Gi"}},
        },
        "llamaSwap": {"healthCheckTimeout": 120, "startPort": start_port},
        "backends": {
            "cpu": {
                "binary": "/usr/local/bin/llama-server",
                "args": ["--n-gpu-layers", "0", "--threads", "1"],
            }
        },
    }
    models = {
        "smol": {"name": "SmolLM2", "file": gguf, "contextSize": 2048},
        "fetched": {
            "file": "org/repo/missing.gguf",
            "source": {"repo": "org/repo", "file": "missing.gguf", "revision": COMMIT},
            "contextSize": 2048,
        },
        "copied": {"file": "mine/copied.gguf", "contextSize": 2048},
    }
    (root / "halogen.yaml").write_text(yaml.safe_dump(site, sort_keys=False))
    for model_id, data in models.items():
        (root / "models.d" / f"{model_id}.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    return root


def _built(tmp_path: Path, gguf: str = "SmolLM2-135M-Instruct.Q4_1.gguf", mount: str = "/models") -> Path:
    root = _site(tmp_path / "site", gguf, free_ports(1)[0], mount)
    built = subprocess.run([str(HALOGEN), "build"], cwd=root, capture_output=True, text=True, timeout=120)
    assert built.returncode == 0, built.stdout + built.stderr
    return root


def test_local_paths_replace_the_pods_models_mount_and_llama_server_and_read_the_sources(
    tmp_path: Path,
) -> None:
    root = _built(tmp_path)
    config = root / "out" / "config.yaml"
    resolved, _ = io.load(config)
    assert resolved.models["smol"].argv[0] == "/usr/local/bin/llama-server"
    assert resolved.models["smol"].source is None  # the config alone does not say
    here = Local(tmp_path / "gguf", tmp_path / "bin" / "llama-server").adapt(resolved, config)
    smol = here.models["smol"]
    assert smol.argv[0] == str(tmp_path / "bin" / "llama-server")
    assert smol.argv[smol.argv.index("-m") + 1] == str(tmp_path / "gguf" / "SmolLM2-135M-Instruct.Q4_1.gguf")
    assert here.models["fetched"].source == f"org/repo/missing.gguf@{COMMIT}"
    assert here.models["copied"].source == ""
    assert sources_beside(tmp_path / "elsewhere.yaml") is None


def test_a_site_with_its_own_models_mount_has_that_mount_rewritten(tmp_path: Path) -> None:
    root = _built(tmp_path, mount="/srv/gguf")
    config = root / "out" / "config.yaml"
    smol = Local(tmp_path / "here").adapt(io.load(config)[0], config).models["smol"]
    assert smol.argv[smol.argv.index("-m") + 1] == str(tmp_path / "here" / "SmolLM2-135M-Instruct.Q4_1.gguf")


def test_serve_finds_the_sites_compiled_config_from_the_site_or_a_sub_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = _built(tmp_path)
    for where in (root, root / "models.d"):
        monkeypatch.chdir(where)
        assert config_of(None).resolve() == (root / "out" / "config.yaml").resolve()
    assert config_of("elsewhere.yaml") == Path("elsewhere.yaml")


def test_a_missing_file_says_pull_for_a_model_with_a_source_and_copy_for_one_without(
    tmp_path: Path,
) -> None:
    root = _built(tmp_path)
    config = root / "out" / "config.yaml"
    models = tmp_path / "gguf"
    here = Local(models).adapt(io.load(config)[0], config)
    with pytest.raises(FileMissing) as fetched:
        require(here.models["fetched"])
    assert str(models / "org/repo/missing.gguf") in str(fetched.value)
    assert "run `halogen pull fetched` in the site" in str(fetched.value)
    with pytest.raises(FileMissing) as copied:
        require(here.models["copied"])
    assert f"no `source`, so nothing fetches it: copy the file to {models / 'mine/copied.gguf'}" in str(
        copied.value
    )


@pytest.mark.real
@pytest.mark.slow
def test_halogen_serve_runs_the_built_site_from_a_sub_folder_on_a_workstation_and_chats_through_openai(
    tmp_path: Path, llama_server: Path, smollm2_gguf: Path
) -> None:
    root = _built(tmp_path, smollm2_gguf.name)
    config = root / "out" / "config.yaml"
    as_built = config.read_bytes()
    (port,) = free_ports(1)
    log = tmp_path / "serve.log"
    # From a sub-folder of the site: serve finds its out/config.yaml as build wrote it.
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
        process = subprocess.Popen(argv, cwd=root / "models.d", stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(process, url, lambda: log.read_text(errors="replace"))
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", timeout=120, max_retries=0)
        reply = client.chat.completions.create(
            model="smol", messages=[{"role": "user", "content": "Say hi."}], max_tokens=8, temperature=0
        )
        assert reply.choices[0].message.content
        missing = httpx.post(
            f"{url}/v1/chat/completions",
            json={"model": "fetched", "messages": [{"role": "user", "content": "hi"}]},
            timeout=30,
        )
        assert missing.status_code == 503
        message = missing.json()["error"]["message"]
        assert str(smollm2_gguf.parent / "org/repo/missing.gguf") in message
        assert "halogen pull fetched" in message
    finally:
        stop_serving(process)
    assert config.read_bytes() == as_built


def test_ollama_pull_of_a_model_without_a_source_says_to_copy_its_file(tmp_path: Path) -> None:
    root = _built(tmp_path)
    config = root / "out" / "config.yaml"
    here = Local(tmp_path / "gguf").adapt(io.load(config)[0], config)
    events = pull_progress(here.models["copied"])
    assert events[-1]["error"].endswith(f"copy the file to {tmp_path / 'gguf' / 'mine/copied.gguf'}")


async def test_a_config_reloaded_while_serving_keeps_the_local_paths(tmp_path: Path) -> None:
    root = _built(tmp_path)
    config = root / "out" / "config.yaml"
    adapt = functools.partial(Local(tmp_path / "gguf").adapt, config_path=config)
    swapper = Swapper(adapt(io.load(config)[0]), logs=Logs(echo_proxy=False))
    watcher = Watcher(config, swapper, Logs(echo_proxy=False), adapt=adapt)
    try:
        config.write_text(config.read_text().replace("--ctx-size 2048", "--ctx-size 1024"))
        assert await watcher.check() is True
        argv = swapper.resolved.models["smol"].argv
        assert "1024" in argv and str(tmp_path / "gguf" / "SmolLM2-135M-Instruct.Q4_1.gguf") in argv
    finally:
        await swapper.close()
