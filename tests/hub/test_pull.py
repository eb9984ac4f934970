"""`halogen pull` against a local Hub, through the real `huggingface_hub` client, serving the
SmolLM2 GGUF: into an empty folder, after a kill, after a cut connection, a corrupt download,
two pulls at once, a pull with nothing to do; then `halogen serve` answers on what it pulled."""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import ollama
import pytest
import yaml

from halogen.compiler.site.lock import Lock, LockedFile, read_lock, write_lock

from .local_hub import COMMIT, LocalHub, running

REPO_ID = "HuggingFaceTB/SmolLM2-135M-Instruct-GGUF"
NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
REL = f"{REPO_ID}/{NAME}"
HALOGEN = Path(sys.executable).with_name("halogen")


def site(root: Path, models_dir: Path, source: dict[str, object] | None = None) -> Path:
    (root / "models.d").mkdir(parents=True)
    (root / "halogen.yaml").write_text(
        yaml.safe_dump(
            {
                "deployment": {
                    "name": "llm",
                    "models": {"hostPath": str(models_dir), "mountPath": "/models"},
                },
                "backends": {"cpu": {"args": ["-ngl", "0"]}},
            }
        )
    )
    model: dict[str, object] = {"file": REL, "contextSize": 1024}
    if source is not None:
        model["source"] = source
    (root / "models.d" / "smollm2.yaml").write_text(yaml.safe_dump(model))
    return root


@pytest.fixture
def hub(smollm2_gguf: Path) -> Iterator[LocalHub]:
    local = LocalHub()
    local.add(REPO_ID, NAME, smollm2_gguf)
    with running(local) as served:
        yield served


@pytest.fixture
def models(tmp_path: Path) -> Path:
    folder = tmp_path / "models"
    folder.mkdir()
    return folder


def env(hub: LocalHub) -> dict[str, str]:
    return {
        **os.environ,
        "HF_ENDPOINT": hub.endpoint,
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "HF_HOME": str(Path(hub.files[(REPO_ID, NAME)].data_path).parent / "no-such-hf-home"),
    }


def pull(hub: LocalHub, root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(HALOGEN), "pull", "--src", str(root), "--no-progress", *args],
        env=env(hub),
        capture_output=True,
        text=True,
        timeout=300,
    )


def start_pull(hub: LocalHub, root: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [str(HALOGEN), "pull", "--src", str(root), "--no-progress"],
        env=env(hub),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def leftovers(models: Path) -> list[str]:
    return sorted(p.name for p in (models / REPO_ID).glob(".*halogen-part"))


def wait_for_partial(models: Path, at_least: int, process: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        parts = list((models / REPO_ID).glob(".*halogen-part")) if (models / REPO_ID).exists() else []
        if parts and parts[0].stat().st_size >= at_least:
            return
        assert process.poll() is None, process.communicate()[0]
        time.sleep(0.05)
    raise AssertionError("the download never got going")


def test_a_pull_into_an_empty_folder_fetches_verifies_and_locks_the_file(
    hub: LocalHub, tmp_path: Path, models: Path, smollm2_gguf: Path
) -> None:
    root = site(tmp_path / "site", models)
    result = pull(hub, root)
    assert result.returncode == 0, result.stderr
    entry = hub.files[(REPO_ID, NAME)]
    assert sha256(models / REL) == entry.sha256
    assert hub.fetched() == entry.size
    locked = read_lock(root / "halogen.lock").files[REL]
    assert (locked.size, locked.sha256) == (entry.size, entry.sha256)
    assert f"sha256 {entry.sha256} verified" in result.stderr
    # `main` is a branch: accepted, with a warning that says what pins the file.
    assert "revision 'main'" in result.stderr and f"found commit {COMMIT}" in result.stderr
    assert leftovers(models) == []


def test_a_second_pull_fetches_nothing(hub: LocalHub, tmp_path: Path, models: Path) -> None:
    root = site(tmp_path / "site", models, {"revision": COMMIT})
    assert pull(hub, root).returncode == 0
    before, heads = hub.fetched(), hub.heads
    again = pull(hub, root)
    assert again.returncode == 0, again.stderr
    assert hub.fetched() == before and hub.heads == heads  # locked and marked: not even a HEAD
    assert f"have {REL} (verified)" in again.stderr
    assert "warning" not in again.stderr  # a commit pins it


def test_a_file_placed_by_hand_is_checked_against_the_hub_and_never_overwritten(
    hub: LocalHub, tmp_path: Path, models: Path, smollm2_gguf: Path
) -> None:
    root = site(tmp_path / "site", models)
    (models / REPO_ID).mkdir(parents=True)
    (models / REL).write_bytes(b"GGUF something else")
    wrong = pull(hub, root)
    assert wrong.returncode == 1 and "it is not the file the site names" in wrong.stderr
    assert (models / REL).read_bytes() == b"GGUF something else" and hub.fetched() == 0
    shutil.copyfile(smollm2_gguf, models / REL)  # the right file, copied by hand as the seed's owner did
    right = pull(hub, root)
    assert right.returncode == 0, right.stderr
    assert hub.fetched() == 0 and f"have {REL} (verified)" in right.stderr


def killed_pull(hub: LocalHub, root: Path, models: Path) -> int:
    """Start a slowed pull, SIGKILL it once a quarter of the file is in; the file's size."""
    size = hub.files[(REPO_ID, NAME)].size
    hub.throttle = 0.02
    first = start_pull(hub, root)
    wait_for_partial(models, size // 4, first)
    first.send_signal(signal.SIGKILL)
    first.wait(10)
    return size


def test_a_killed_pull_resumes_where_it_stopped(hub: LocalHub, tmp_path: Path, models: Path) -> None:
    root = site(tmp_path / "site", models)
    size = killed_pull(hub, root, models)
    assert not (models / REL).exists()
    kept = sum(p.stat().st_size for p in (models / REPO_ID).glob(".*halogen-part"))
    hub.throttle = 0.0
    hub.gets.clear()
    second = pull(hub, root)
    assert second.returncode == 0, second.stderr
    assert sha256(models / REL) == hub.files[(REPO_ID, NAME)].sha256
    assert [g.start for g in hub.gets] == [kept]
    assert hub.fetched() == size - kept < size
    assert "resumed at" in second.stderr


def test_a_server_that_ignores_range_still_gives_a_verified_file(
    hub: LocalHub, tmp_path: Path, models: Path
) -> None:
    root = site(tmp_path / "site", models)
    size = killed_pull(hub, root, models)
    hub.throttle, hub.ignore_range = 0.0, True
    hub.gets.clear()
    second = pull(hub, root)
    assert second.returncode == 0, second.stderr
    assert [g.start for g in hub.gets] == [0] and hub.fetched() == size  # started over, as it had to
    assert sha256(models / REL) == hub.files[(REPO_ID, NAME)].sha256


def test_a_partial_of_another_version_is_never_continued(hub: LocalHub, tmp_path: Path, models: Path) -> None:
    root = site(tmp_path / "site", models)
    (models / REPO_ID).mkdir(parents=True)
    other = models / REPO_ID / f".{NAME}.{'e' * 16}.halogen-part"
    other.write_bytes(b"GGUF from a revision the branch has left")
    result = pull(hub, root)
    assert result.returncode == 0, result.stderr
    assert [g.start for g in hub.gets] == [0] and not other.exists()
    assert sha256(models / REL) == hub.files[(REPO_ID, NAME)].sha256


def test_a_cut_connection_is_resumed_with_a_range_request(
    hub: LocalHub, tmp_path: Path, models: Path
) -> None:
    root = site(tmp_path / "site", models)
    size = hub.files[(REPO_ID, NAME)].size
    hub.cut_after = size // 3
    result = pull(hub, root)
    assert result.returncode == 0, result.stderr
    assert sha256(models / REL) == hub.files[(REPO_ID, NAME)].sha256
    first, second = hub.gets
    assert first.start == 0 and second.start > 0  # the second request asked for the rest only
    # What the client had received when the connection dropped (less than the server wrote:
    # some was still in the kernel's buffers) is not fetched again.
    assert second.sent == size - second.start < size


def test_a_corrupt_download_is_refused_and_nothing_takes_the_final_name(
    hub: LocalHub, tmp_path: Path, models: Path
) -> None:
    root = site(tmp_path / "site", models)
    hub.corrupt = True
    result = pull(hub, root)
    assert result.returncode == 1
    assert "download is corrupt and was deleted" in result.stderr
    assert not (models / REL).exists()
    assert leftovers(models) == []
    assert not (root / "halogen.lock").exists()  # nothing verified, nothing recorded


def test_a_file_that_disagrees_with_the_lock_is_refused(hub: LocalHub, tmp_path: Path, models: Path) -> None:
    root = site(tmp_path / "site", models)
    write_lock(root / "halogen.lock", Lock({REL: LockedFile(hub.files[(REPO_ID, NAME)].size, "f" * 64)}))
    result = pull(hub, root)
    assert result.returncode == 1
    assert "the revision moved" in result.stderr
    assert not (models / REL).exists() and hub.fetched() == 0


def test_two_pulls_of_the_same_file_at_once_leave_one_good_copy(
    hub: LocalHub, tmp_path: Path, models: Path
) -> None:
    root = site(tmp_path / "site", models)
    hub.throttle = 0.002
    first, second = start_pull(hub, root), start_pull(hub, root)
    outputs = [p.communicate(timeout=300)[0] for p in (first, second)]
    assert (first.returncode, second.returncode) == (0, 0), outputs
    assert sha256(models / REL) == hub.files[(REPO_ID, NAME)].sha256
    assert hub.fetched() == hub.files[(REPO_ID, NAME)].size  # one fetched, the other waited and found it
    assert leftovers(models) == []


def test_the_jobs_command_pulls_what_the_built_sources_name(
    hub: LocalHub, tmp_path: Path, models: Path
) -> None:
    root = site(tmp_path / "site", models)
    built = subprocess.run(
        [str(HALOGEN), "build", "--src", str(root)], capture_output=True, text=True, timeout=120
    )
    assert built.returncode == 0, built.stderr
    job = yaml.safe_load((root / "out" / "pull" / "job.yaml").read_text())
    configmap = yaml.safe_load((root / "out" / "pull" / "sources.yaml").read_text())
    sources = tmp_path / "sources.yaml"  # where the Job mounts the ConfigMap
    sources.write_text(configmap["data"]["sources.yaml"])
    argv = job["spec"]["template"]["spec"]["containers"][0]["command"]
    argv[argv.index("--sources") + 1] = str(sources)
    argv[argv.index("--models-dir") + 1] = str(models)
    result = subprocess.run(
        [str(HALOGEN), *argv[1:]], env=env(hub), capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    assert sha256(models / REL) == hub.files[(REPO_ID, NAME)].sha256
    # The Job cannot write the site: the sources file is all it has.
    assert not (root / "halogen.lock").exists()


def test_the_images_runtime_install_is_enough_for_the_jobs_pull(
    hub: LocalHub, tmp_path: Path, models: Path
) -> None:
    """The image installs halogen[runtime]: pull must not need the compiler's jinja2 or
    kubernetes-validate (the import of either fails here, as it would in the image)."""
    sources = tmp_path / "sources.yaml"
    sources.write_text(
        yaml.safe_dump(
            {
                "version": 1,
                "files": {REL: {"repo": REPO_ID, "file": NAME, "revision": COMMIT, "models": ["m"]}},
            }
        )
    )
    blocker = (
        "import sys, importlib.abc\n"
        "class Refuse(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path, target=None):\n"
        "        if name.split('.')[0] in ('jinja2', 'kubernetes_validate', 'gguf'):\n"
        "            raise ImportError(name + ' is not in the image')\n"
        "sys.meta_path.insert(0, Refuse())\n"
        "from halogen.cli import main\n"
        "main()\n"
    )
    argv = ["pull", "--sources", str(sources), "--models-dir", str(models), "--no-progress"]
    result = subprocess.run(
        [sys.executable, "-c", blocker, *argv], env=env(hub), capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    assert sha256(models / REL) == hub.files[(REPO_ID, NAME)].sha256


def test_dry_run_says_what_would_be_fetched_and_fetches_nothing(
    hub: LocalHub, tmp_path: Path, models: Path
) -> None:
    root = site(tmp_path / "site", models)
    result = pull(hub, root, "--dry-run")
    assert result.returncode == 0, result.stderr
    assert f"fetch {REL} from {REPO_ID}@main: 93.8 MiB of 93.8 MiB" in result.stderr
    assert "would fetch 93.8 MiB in all" in result.stderr
    assert hub.fetched() == 0 and not (models / REL).exists()


def test_a_pull_without_room_for_the_file_fetches_nothing_and_says_how_much_it_needs(
    hub: LocalHub, models: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from halogen.hub import download
    from halogen.modelfiles import FileSource

    # A disk with 10 MiB free; the file is 94 MiB. (A real full disk cannot be made here.)
    real = shutil.disk_usage(models)
    monkeypatch.setattr(download.shutil, "disk_usage", lambda _: real._replace(free=10 << 20))
    monkeypatch.setenv("HF_ENDPOINT", hub.endpoint)
    with pytest.raises(download.PullError, match=r"needs 93\.8 MiB more but .* has 10\.0 MiB free"):
        download.fetch(models, FileSource(REL, REPO_ID, NAME, "main", ("smollm2",)), progress=False)
    assert hub.fetched() == 0 and not (models / REL).exists()


def test_pull_names_models_and_refuses_one_the_site_does_not_source(
    hub: LocalHub, tmp_path: Path, models: Path
) -> None:
    root = site(tmp_path / "site", models)
    wrong = pull(hub, root, "smollm3")
    assert wrong.returncode == 2
    assert "no model 'smollm3' with a source (models with one: smollm2)" in wrong.stderr
    assert hub.heads == 0
    right = pull(hub, root, "smollm2")
    assert right.returncode == 0 and (models / REL).is_file()


def test_a_private_repository_needs_hf_token(hub: LocalHub, tmp_path: Path, models: Path) -> None:
    root = site(tmp_path / "site", models)
    hub.token = "hf_test_token"
    without = pull(hub, root)
    assert without.returncode == 1
    assert f"repository {REPO_ID} not found, or private without HF_TOKEN" in without.stderr
    with_token = subprocess.run(
        [str(HALOGEN), "pull", "--src", str(root), "--no-progress"],
        env={**env(hub), "HF_TOKEN": "hf_test_token"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert with_token.returncode == 0, with_token.stderr
    assert sha256(models / REL) == hub.files[(REPO_ID, NAME)].sha256
    assert "hf_test_token" not in with_token.stderr


def test_an_unknown_revision_is_a_clear_error(hub: LocalHub, tmp_path: Path, models: Path) -> None:
    root = site(tmp_path / "site", models, {"revision": "v9"})
    result = pull(hub, root)
    assert result.returncode == 1
    assert f"revision 'v9' not found in {REPO_ID}" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.real
@pytest.mark.slow
def test_serve_answers_a_chat_on_the_pulled_model(
    hub: LocalHub, tmp_path: Path, models: Path, llama_server: Path
) -> None:
    from tests.runtime.harness import free_port_run
    from tests.runtime.processes import halogen_serve

    root = site(tmp_path / "site", models)
    assert pull(hub, root).returncode == 0
    config = tmp_path / "config.yaml"
    cmd = f"{llama_server} --host 127.0.0.1 --port ${{PORT}} -c 1024 -t 1 -m "
    later = models / REPO_ID / "not-pulled-yet.gguf"
    config.write_text(
        yaml.safe_dump(
            {
                "healthCheckTimeout": 60,
                "startPort": free_port_run(2),
                "models": {"smollm2": {"cmd": cmd + str(models / REL)}, "later": {"cmd": cmd + str(later)}},
            }
        )
    )
    with halogen_serve(config, tmp_path / "serve.log", "--no-watch") as serving:
        client = ollama.Client(host=serving.url, timeout=120)
        reply = client.chat(
            model="smollm2", messages=[{"role": "user", "content": "Say hello."}], options={"num_predict": 8}
        )
        assert reply.message.role == "assistant" and reply.message.content
        # Ollama's pull says the file is there and verified, with the sha256 pull checked.
        progress = list(client.pull("smollm2", stream=True))
        assert progress[-1].status == "success"
        assert any(p.digest == f"sha256:{hub.files[(REPO_ID, NAME)].sha256}" for p in progress)
        # A model whose file the Job has not placed yet: a 503 naming it, not a crashed llama-server.
        with pytest.raises(ollama.ResponseError) as refused:
            client.chat(model="later", messages=[{"role": "user", "content": "hi"}])
        assert refused.value.status_code == 503 and str(later) in refused.value.error
        with pytest.raises(ollama.ResponseError) as not_there:
            list(client.pull("later", stream=True))
        assert "the cluster fetches models from the site" in not_there.value.error
