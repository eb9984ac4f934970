"""`halogen lock --remote` against the local Hub, through the real `huggingface_hub` client: the
lock of models of real shapes (sparse GGUFs of tens of GB) from their headers, read by range, and
the sha256 from the Hub's LFS metadata; no weights are fetched. Then `halogen pull` verifies
against what it recorded."""

from __future__ import annotations

import hashlib
import os
import struct
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from halogen.compiler.site.lock import read_lock
from halogen.hub import header
from halogen.llamacpp.gguf_header import read_facts
from tests import gguf_shapes as shapes

from .local_hub import COMMIT, LocalHub, running

HALOGEN = Path(sys.executable).with_name("halogen")
MiB = 1 << 20
# Real shapes the lock reads (tests/gguf_shapes.py): repo, file in it, shape.
MODELS = {
    "qwen2.5-coder-7b": ("Qwen/Qwen2.5-Coder-7B-Instruct-GGUF", "qwen2.5-coder-7b-instruct-q5_k_m.gguf", shapes.QWEN25_7B),
    "deepseek-coder-v2-lite": ("bartowski/DeepSeek-Coder-V2-Lite-Instruct-GGUF", "DeepSeek-Coder-V2-Lite-Instruct-Q4_K_M.gguf", shapes.DEEPSEEK_V2_LITE),
    "gpt-oss-20b": ("unsloth/gpt-oss-20b-GGUF", "gpt-oss-20b-UD-Q8_K_XL.gguf", shapes.GPT_OSS_20B),
}  # fmt: skip


def fake_sha(path: Path) -> str:
    """What the Hub lists a sparse file with: hashing tens of GB of holes proves nothing here."""
    return hashlib.sha256(path.name.encode()).hexdigest()


def repo_with_site(tmp: Path, models: dict[str, dict[str, object]]) -> Path:
    """A git repository with a site in apps/llm/; returns the site."""
    repo = tmp / "repo"
    site = repo / "apps" / "llm"
    (site / "models.d").mkdir(parents=True)
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    (site / "halogen.yaml").write_text(
        yaml.safe_dump(
            {
                "deployment": {
                    "name": "llm",
                    "models": {"hostPath": str(tmp / "node"), "mountPath": "/models"},
                },
                "memoryBudget": "120Gi",
                "backends": {"cpu": {"args": ["-ngl", "0"]}},
            }
        )
    )
    for model_id, data in models.items():
        (site / "models.d" / f"{model_id}.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    return site


def halogen(
    hub: LocalHub, cwd: Path, *args: str, token: str | None = None
) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "HF_ENDPOINT": hub.endpoint,
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "HF_HOME": str(cwd / ".no-hf-home"),
    }
    env.pop("HF_TOKEN", None)
    if token is not None:
        env["HF_TOKEN"] = token
    return subprocess.run(
        [str(HALOGEN), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300, check=False
    )


@pytest.fixture
def hub() -> Iterator[LocalHub]:
    with running(LocalHub()) as served:
        yield served


def test_lock_remote_locks_models_of_real_shapes_fetching_at_most_one_mib_of_each(
    hub: LocalHub, tmp_path: Path
) -> None:
    local = {}
    for model_id, (repo, name, shape) in MODELS.items():
        path = shapes.write_sparse(tmp_path / "hub" / repo / name, shape)
        local[model_id] = (path, hub.add(repo, name, path, sha256=fake_sha(path)))
    site = repo_with_site(
        tmp_path,
        {m: {"file": f"{repo}/{name}", "contextSize": 8192} for m, (repo, name, _) in MODELS.items()},
    )
    result = halogen(hub, site / "models.d", "lock", "--remote")
    assert result.returncode == 0, result.stderr
    lock = read_lock(site / "halogen.lock")
    for model_id, (repo, name, _) in MODELS.items():
        path, served = local[model_id]
        entry = lock.files[f"{repo}/{name}"]
        assert (entry.size, entry.sha256) == (path.stat().st_size, served.sha256)
        assert entry.gguf == read_facts(path)  # what `halogen lock` on the node reads
        fetched = hub.fetched(served.sha256)
        print(f"{model_id}: {fetched} bytes fetched of {served.size}")
        assert 0 < fetched <= 1 * MiB
        assert f"{model_id}: {repo}/{name}" in result.stderr
    assert hub.infos == len(MODELS)  # one model info per repository


def test_lock_remote_again_reads_no_header_when_the_hub_has_the_locked_sha256(
    hub: LocalHub, tmp_path: Path
) -> None:
    repo, name, shape = MODELS["qwen2.5-coder-7b"]
    path = shapes.write_sparse(tmp_path / "hub" / name, shape)
    hub.add(repo, name, path, sha256=fake_sha(path))
    site = repo_with_site(tmp_path, {"qwen": {"file": f"{repo}/{name}"}})
    assert halogen(hub, site, "lock", "--remote").returncode == 0
    before, gets = (site / "halogen.lock").read_bytes(), len(hub.gets)
    again = halogen(hub, site, "lock", "--remote")
    assert again.returncode == 0, again.stderr
    assert len(hub.gets) == gets and (site / "halogen.lock").read_bytes() == before
    assert "unchanged on the Hub" in again.stderr


def test_a_split_gguf_is_locked_part_by_part_with_its_tensors_counted_over_every_part(
    hub: LocalHub, tmp_path: Path
) -> None:
    repo = "unsloth/Qwen2.5-Coder-32B-Instruct-GGUF"
    whole = read_facts(shapes.write_sparse(tmp_path / "whole" / "q.gguf", shapes.QWEN25_32B))
    first = shapes.write_sparse(tmp_path / "hub" / "Q5_K_M" / "q.gguf", shapes.QWEN25_32B, parts=3)
    parts = sorted(first.parent.iterdir())
    assert [p.name for p in parts] == [f"q-0000{i}-of-00003.gguf" for i in (1, 2, 3)]
    for part in parts:
        hub.add(repo, f"Q5_K_M/{part.name}", part, sha256=fake_sha(part))
    site = repo_with_site(tmp_path, {"qwen-32b": {"file": f"{repo}/Q5_K_M/{parts[0].name}"}})
    result = halogen(hub, site, "lock", "--remote")
    assert result.returncode == 0, result.stderr
    lock = read_lock(site / "halogen.lock")
    assert sorted(lock.files) == [f"{repo}/Q5_K_M/{p.name}" for p in parts]
    for part in parts:
        entry = lock.files[f"{repo}/Q5_K_M/{part.name}"]
        assert (entry.size, entry.sha256) == (part.stat().st_size, fake_sha(part))
    facts = lock.files[f"{repo}/Q5_K_M/{parts[0].name}"].gguf
    assert facts is not None
    assert (facts.parameterCount, facts.tensorBytes) == (whole.parameterCount, whole.tensorBytes)
    assert facts.info["general.parameter_count"] == whole.parameterCount
    assert hub.fetched() <= 3 * MiB


@pytest.mark.slow
def test_a_header_longer_than_the_first_request_is_read_in_steps(hub: LocalHub, tmp_path: Path) -> None:
    shape = shapes.Shape("llama", "vocabulary (synthetic)", shapes.QWEN25_3B.file_type, shapes.Q.Q4_K,
                         2, 512, 1024, 8, 8, 64000, 8192)  # fmt: skip
    path = shapes.write_sparse(tmp_path / "hub" / "v.gguf", shape, vocabulary=True)
    length = header.header_length(path.read_bytes())
    assert length is not None and length > header.FIRST
    served = hub.add("org/vocab-GGUF", "v.gguf", path)
    site = repo_with_site(tmp_path, {"v": {"file": "org/vocab-GGUF/v.gguf"}})
    result = halogen(hub, site, "lock", "--remote")
    assert result.returncode == 0, result.stderr
    assert len(hub.gets) == 2 and length <= hub.fetched(served.sha256) <= 2 * length
    assert read_lock(site / "halogen.lock").files["org/vocab-GGUF/v.gguf"].gguf == read_facts(path)


def test_a_file_the_repository_lacks_is_an_error_at_the_model_file_and_nothing_is_written(
    hub: LocalHub, tmp_path: Path
) -> None:
    repo, name, shape = MODELS["qwen2.5-coder-7b"]
    path = shapes.write_sparse(tmp_path / "hub" / name, shape)
    hub.add(repo, name, path, sha256=fake_sha(path))
    site = repo_with_site(tmp_path, {"qwen": {"file": f"{repo}/{name.replace('q5', 'q6')}"}})
    result = halogen(hub, site, "lock", "--remote")
    assert result.returncode == 1
    assert (
        f"models.d/qwen.yaml:1:1: file: {name.replace('q5', 'q6')} is not in {repo} at main "
        f"(its GGUF files: {name})"
    ) in result.stderr
    assert "Traceback" not in result.stderr and not (site / "halogen.lock").exists()


def test_a_file_that_is_no_gguf_is_an_error_that_says_so(hub: LocalHub, tmp_path: Path) -> None:
    text = tmp_path / "hub" / "notes.gguf"
    text.parent.mkdir()
    text.write_text("not a model\n" * 100)
    hub.add("org/repo", "notes.gguf", text)
    site = repo_with_site(tmp_path, {"notes": {"file": "org/repo/notes.gguf"}})
    result = halogen(hub, site, "lock", "--remote")
    assert result.returncode == 1
    assert "org/repo/notes.gguf is not a readable GGUF file: not a GGUF file" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_later_pull_verifies_against_the_sha256_lock_remote_recorded(hub: LocalHub, tmp_path: Path) -> None:
    small = shapes.Shape("llama", "small (synthetic)", shapes.QWEN25_3B.file_type, shapes.Q.Q4_K,
                         2, 256, 512, 4, 4, 1000, 4096)  # fmt: skip
    path = shapes.write_sparse(tmp_path / "hub" / "small.gguf", small)
    served = hub.add("org/small-GGUF", "small.gguf", path)
    site = repo_with_site(
        tmp_path, {"small": {"file": "org/small-GGUF/small.gguf", "source": {"revision": COMMIT}}}
    )
    assert halogen(hub, site, "lock", "--remote").returncode == 0
    assert read_lock(site / "halogen.lock").files["org/small-GGUF/small.gguf"].sha256 == served.sha256
    # The Hub's file changes under the same name: pull refuses it against the lock.
    other = tmp_path / "hub" / "other.gguf"
    other.write_bytes(path.read_bytes()[:-1] + b"\x01")
    hub.add("org/small-GGUF", "small.gguf", other)
    (tmp_path / "node").mkdir()
    refused = halogen(hub, site, "pull", "--src", str(site), "--no-progress")
    assert refused.returncode == 1
    assert f"halogen.lock says {served.sha256}" in refused.stderr
    hub.add("org/small-GGUF", "small.gguf", path)
    pulled = halogen(hub, site, "pull", "--src", str(site), "--no-progress")
    assert pulled.returncode == 0, pulled.stderr
    assert f"sha256 {served.sha256} verified" in pulled.stderr
    # On the node, the lock of the file on disk is the lock the Hub gave, byte for byte.
    checked = halogen(hub, site, "lock", "--check")
    assert checked.returncode == 0, checked.stderr


def test_header_length_needs_the_whole_header_and_refuses_what_is_no_gguf(tmp_path: Path) -> None:
    path = shapes.write_sparse(tmp_path / "q.gguf", shapes.QWEN25_3B)
    head = path.open("rb").read(header.FIRST)
    end = header.header_length(head)
    assert end is not None and end % 32 == 0
    assert header.header_length(head[: end // 2]) is None
    assert header.split_count(head[:end]) == 1
    with pytest.raises(header.HeaderError, match="no GGUF magic"):
        header.header_length(b"PK\x03\x04" + bytes(100))


def test_a_cdn_that_ignores_range_still_costs_only_about_the_header(hub: LocalHub, tmp_path: Path) -> None:
    repo, name, shape = MODELS["gpt-oss-20b"]
    path = shapes.write_sparse(tmp_path / "hub" / name, shape)
    served = hub.add(repo, name, path, sha256=fake_sha(path))
    hub.ignore_range = True  # 200 and the whole file, from its first byte
    site = repo_with_site(tmp_path, {"gpt-oss": {"file": f"{repo}/{name}"}})
    result = halogen(hub, site, "lock", "--remote")
    assert result.returncode == 0, result.stderr
    assert read_lock(site / "halogen.lock").files[f"{repo}/{name}"].gguf == read_facts(path)
    # Read as far as needed, then closed: what the CDN sent is that, and what filled the sockets'
    # buffers meanwhile (of 12 GB).
    assert hub.fetched(served.sha256) <= 16 * MiB


def test_a_private_repository_is_read_with_hf_token_and_refused_without(
    hub: LocalHub, tmp_path: Path
) -> None:
    repo, name, shape = MODELS["qwen2.5-coder-7b"]
    path = shapes.write_sparse(tmp_path / "hub" / name, shape)
    hub.add(repo, name, path, sha256=fake_sha(path))
    hub.token = "hf_secret"
    site = repo_with_site(tmp_path, {"qwen": {"file": f"{repo}/{name}"}})
    refused = halogen(hub, site, "lock", "--remote")
    assert refused.returncode == 1
    assert (
        f"models.d/qwen.yaml:1:1: file: {repo}@main: repository not found, or private without HF_TOKEN"
        in refused.stderr
    )
    allowed = halogen(hub, site, "lock", "--remote", token="hf_secret")
    assert allowed.returncode == 0, allowed.stderr
    assert "hf_secret" not in (site / "halogen.lock").read_text()


@pytest.mark.slow
def test_the_real_smollm2_header_spans_two_requests_and_locks_as_the_file_on_disk_does(
    hub: LocalHub, tmp_path: Path, smollm2_gguf: Path
) -> None:
    repo = "HuggingFaceTB/SmolLM2-135M-Instruct-GGUF"
    served = hub.add(repo, smollm2_gguf.name, smollm2_gguf)
    site = repo_with_site(tmp_path, {"smollm2": {"file": f"{repo}/{smollm2_gguf.name}", "contextSize": 2048}})
    result = halogen(hub, site, "lock", "--remote")
    assert result.returncode == 0, result.stderr
    entry = read_lock(site / "halogen.lock").files[f"{repo}/{smollm2_gguf.name}"]
    assert (entry.size, entry.sha256, entry.gguf) == (served.size, served.sha256, read_facts(smollm2_gguf))
    assert len(hub.gets) == 2 and hub.fetched() == 2 * MiB  # its header is 1.7 MiB, of 94 MiB


def test_a_crafted_header_of_arrays_nested_without_end_is_refused_not_a_crash() -> None:
    nested = b"".join(struct.pack("<IQ", 9, 1) for _ in range(100_000))  # array of one array of...
    head = (
        b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + struct.pack("<Q", 1) + b"k" + struct.pack("<I", 9) + nested
    )
    with pytest.raises(header.HeaderError, match="nested deeper than 8"):
        header.header_length(head)


def test_after_lock_remote_the_build_checks_memory_and_fits_routing_before_any_download(
    hub: LocalHub, tmp_path: Path
) -> None:
    for repo, name, shape in MODELS.values():
        path = shapes.write_sparse(tmp_path / "hub" / repo / name, shape)
        hub.add(repo, name, path, sha256=fake_sha(path))
    site = repo_with_site(
        tmp_path,
        {m: {"file": f"{repo}/{name}", "contextSize": 8192} for m, (repo, name, _) in MODELS.items()},
    )
    assert halogen(hub, site, "lock", "--remote").returncode == 0
    assert not (tmp_path / "node").exists()  # nothing downloaded, nowhere to put it
    fitted = halogen(hub, site, "build")
    assert fitted.returncode == 0, fitted.stderr
    config = yaml.safe_load((site / "out" / "config.yaml").read_text())
    assert all(isinstance(config["models"][m]["metadata"]["memory"], int) for m in MODELS)
    assert config["routing"]["router"]["use"] == "matrix"  # fitted to the 120Gi budget
    spec = yaml.safe_load((site / "halogen.yaml").read_text())
    spec["memoryBudget"] = "8Gi"
    (site / "halogen.yaml").write_text(yaml.safe_dump(spec))
    over = halogen(hub, site, "build")
    assert over.returncode == 1
    assert "models.d/gpt-oss-20b.yaml:2:1: contextSize: needs " in over.stderr
    assert "(weights 11.2 GiB, KV cache" in over.stderr and "over the budget of 8.0 GiB" in over.stderr
