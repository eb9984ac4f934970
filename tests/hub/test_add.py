"""`halogen add ORG/REPO/FILE.gguf` against the local Hub: a model file from the Hub's facts
(id, file, source pinned to the commit, contextSize within the trained context), its sha256 and
header in halogen.lock, and a site that builds with it; never over an existing model file."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from halogen.commands.add import model_id
from halogen.compiler.site.lock import read_lock
from halogen.llamacpp.gguf_header import read_facts
from tests import gguf_shapes as shapes

from .local_hub import COMMIT, LocalHub, running
from .test_remote_lock import HALOGEN, MiB, fake_sha, halogen, repo_with_site

QWEN = ("Qwen/Qwen2.5-Coder-7B-Instruct-GGUF", "qwen2.5-coder-7b-instruct-q5_k_m.gguf")
GPT_OSS = ("unsloth/gpt-oss-20b-GGUF", "gpt-oss-20b-UD-Q8_K_XL.gguf")


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[LocalHub]:
    local = LocalHub()
    for (repo, name), shape in ((QWEN, shapes.QWEN25_7B), (GPT_OSS, shapes.GPT_OSS_20B)):
        path = shapes.write_sparse(tmp_path / "hub" / repo / name, shape)
        local.add(repo, name, path, sha256=fake_sha(path))
    with running(local) as served:
        yield served


@pytest.fixture
def site(tmp_path: Path) -> Path:
    return repo_with_site(tmp_path, {})


def test_add_writes_a_model_pinned_to_the_commit_and_locks_its_facts_and_the_site_builds(
    hub: LocalHub, site: Path, tmp_path: Path
) -> None:
    repo, name = QWEN
    result = halogen(hub, site / "models.d", "add", f"{repo}/{name}")
    assert result.returncode == 0, result.stderr
    written = site / "models.d" / "qwen2.5-coder-7b-instruct-q5_k_m.yaml"
    assert yaml.safe_load(written.read_text()) == {
        "name": "Qwen2.5 Coder 7B Instruct (synthetic)",
        "file": f"{repo}/{name}",
        "source": {"repo": repo, "file": name, "revision": COMMIT},
        "contextSize": 32768,
    }
    assert written.read_text().startswith(
        f"# Written by `halogen add {repo}/{name}`: qwen2, 7.6B parameters, Q5_K_M"
    )
    sparse = tmp_path / "hub" / repo / name
    entry = read_lock(site / "halogen.lock").files[f"{repo}/{name}"]
    assert (entry.size, entry.sha256, entry.gguf) == (
        sparse.stat().st_size,
        fake_sha(sparse),
        read_facts(sparse),
    )
    assert hub.fetched() <= 1 * MiB
    built = subprocess.run(
        [str(HALOGEN), "build"], cwd=site / "models.d", capture_output=True, text=True, check=False
    )
    assert built.returncode == 0, built.stderr
    assert "memory" in (site / "out" / "config.yaml").read_text()


def test_add_keeps_a_long_trained_context_to_32768_unless_asked_and_never_beyond_it(
    hub: LocalHub, site: Path
) -> None:
    spec = "/".join(GPT_OSS)
    assert halogen(hub, site, "add", spec).returncode == 0
    data = yaml.safe_load((site / "models.d" / "gpt-oss-20b-ud-q8_k_xl.yaml").read_text())
    assert data["contextSize"] == 32768
    refused = halogen(hub, site, "add", spec, "--id", "big", "--context-size", "200000")
    assert refused.returncode == 2
    assert "200000 is above the 131072 tokens gpt-oss-20b-UD-Q8_K_XL.gguf was trained on" in refused.stderr
    assert not (site / "models.d" / "big.yaml").exists()
    assert halogen(hub, site, "add", spec, "--id", "big", "--context-size", "131072").returncode == 0


def test_add_never_overwrites_a_model_file_and_asks_the_hub_nothing(hub: LocalHub, site: Path) -> None:
    existing = site / "models.d" / "qwen2.5-coder-7b-instruct-q5_k_m.yaml"
    existing.write_text("file: mine.gguf\n")
    result = halogen(hub, site, "add", "/".join(QWEN))
    assert result.returncode == 1
    assert (
        "models.d/qwen2.5-coder-7b-instruct-q5_k_m.yaml: exists: add never overwrites a model file"
        in result.stderr
    )
    assert existing.read_text() == "file: mine.gguf\n" and hub.infos == 0
    assert not (site / "halogen.lock").exists()


@pytest.mark.parametrize(
    "spec", ["Qwen/qwen.gguf", "Qwen/Repo/model.bin", "Qwen/Repo/a-00002-of-00003.gguf", "a b/c/d.gguf"]
)
def test_add_refuses_what_is_not_org_repo_file_gguf_with_a_usage_error(
    hub: LocalHub, site: Path, spec: str
) -> None:
    result = halogen(hub, site, "add", spec)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "MODEL" in result.stderr and hub.infos == 0


def test_a_file_the_repository_lacks_is_a_clear_error(hub: LocalHub, site: Path) -> None:
    result = halogen(hub, site, "add", f"{QWEN[0]}/missing.gguf")
    assert result.returncode == 1
    assert f"missing.gguf is not in {QWEN[0]} at main (its GGUF files: {QWEN[1]})" in result.stderr
    assert list((site / "models.d").iterdir()) == []


@pytest.mark.parametrize(
    ("file", "expected"),
    [
        ("qwen2.5-coder-7b-instruct-q5_k_m.gguf", "qwen2.5-coder-7b-instruct-q5_k_m"),
        ("Q5_K_M/Qwen2.5-Coder-32B-Instruct-Q5_K_M-00001-of-00003.gguf", "qwen2.5-coder-32b-instruct-q5_k_m"),
        ("My Model+v2 .gguf", "my-model-v2"),
        ("_hidden.gguf", "hidden"),
    ],
)
def test_a_model_id_is_the_file_name_lower_case_without_what_an_id_may_not_hold(
    file: str, expected: str
) -> None:
    assert model_id(file) == expected


def test_add_to_a_site_of_several_backends_asks_which_and_names_it(hub: LocalHub, site: Path) -> None:
    spec = yaml.safe_load((site / "halogen.yaml").read_text())
    spec["backends"]["gpu"] = {"args": ["-ngl", "999"]}
    (site / "halogen.yaml").write_text(yaml.safe_dump(spec))
    asked = halogen(hub, site, "add", "/".join(QWEN))
    assert asked.returncode == 2 and "the site has backends cpu, gpu: name one" in asked.stderr
    assert hub.infos == 0 and list((site / "models.d").iterdir()) == []
    assert halogen(hub, site, "add", "/".join(QWEN), "--backend", "gpu").returncode == 0
    data = yaml.safe_load((site / "models.d" / "qwen2.5-coder-7b-instruct-q5_k_m.yaml").read_text())
    assert data["backend"] == "gpu"
    assert subprocess.run([str(HALOGEN), "validate"], cwd=site, check=False).returncode == 0


def test_add_of_a_split_gguf_names_its_first_part_and_locks_every_part(
    hub: LocalHub, site: Path, tmp_path: Path
) -> None:
    repo = "unsloth/Qwen2.5-Coder-32B-Instruct-GGUF"
    first = shapes.write_sparse(
        tmp_path / "split" / "Q5_K_M" / "Qwen-32B-Q5_K_M.gguf", shapes.QWEN25_32B, parts=2
    )
    for part in sorted(first.parent.iterdir()):
        hub.add(repo, f"Q5_K_M/{part.name}", part, sha256=fake_sha(part))
    result = halogen(hub, site, "add", f"{repo}/Q5_K_M/{first.name}")
    assert result.returncode == 0, result.stderr
    data = yaml.safe_load((site / "models.d" / "qwen-32b-q5_k_m.yaml").read_text())
    assert data["file"] == f"{repo}/Q5_K_M/Qwen-32B-Q5_K_M-00001-of-00002.gguf"
    assert data["source"]["file"] == "Q5_K_M/Qwen-32B-Q5_K_M-00001-of-00002.gguf"
    lock = read_lock(site / "halogen.lock")
    assert sorted(lock.files) == [f"{repo}/Q5_K_M/Qwen-32B-Q5_K_M-0000{i}-of-00002.gguf" for i in (1, 2)]
    assert halogen(hub, site, "build").returncode == 0
