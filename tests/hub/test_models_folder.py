"""Model file paths stay in the models folder: a key of the sources document, a key of
halogen.lock or a site's `file:` that climbs out with '..', is absolute, is empty or names the
folder itself, holds a NUL byte or a backslash, or follows a symbolic link out of the folder, is
refused with a clear error, and nothing is fetched or written. Through the console script, with
a local Hub (tests/hub/local_hub.py) serving a small file."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import gguf
import pytest
import yaml

from halogen.compiler.site.lock import Lock, LockedFile, write_lock
from tests.gguf_shapes import Shape, write_sparse

from .local_hub import COMMIT, LocalHub, running

HALOGEN = Path(sys.executable).with_name("halogen")
REPO_ID = "org/repo"
NAME = "x.gguf"
REL = f"{REPO_ID}/{NAME}"
DATA = b"GGUF" + bytes(range(256)) * 16
TINY = Shape(
    "llama", "tiny", gguf.LlamaFileType.ALL_F32, gguf.GGMLQuantizationType.F32, 1, 32, 64, 2, 1, 64, 512
)


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[LocalHub]:
    served = tmp_path / "served.gguf"
    served.write_bytes(DATA)
    local = LocalHub()
    local.add(REPO_ID, NAME, served)
    with running(local) as hub:
        yield hub


@pytest.fixture
def models(tmp_path: Path) -> Path:
    folder = tmp_path / "models"
    folder.mkdir()
    return folder


def env(hub: LocalHub, tmp_path: Path) -> dict[str, str]:
    return {
        **os.environ,
        "HF_ENDPOINT": hub.endpoint,
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "HF_HOME": str(tmp_path / "hf-home"),
    }


def sources(tmp_path: Path, *keys: str) -> Path:
    """A sources document (what the pull Job reads) with one entry per key, all for the served file."""
    path = tmp_path / "sources.yaml"
    entry = {"repo": REPO_ID, "file": NAME, "revision": COMMIT, "models": ["m"]}
    path.write_text(yaml.safe_dump({"version": 1, "files": dict.fromkeys(keys, entry)}, sort_keys=False))
    return path


def pull(hub: LocalHub, tmp_path: Path, *args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(HALOGEN), "pull", "--no-progress", *map(str, args)],
        env=env(hub, tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
    )


def everything_under(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")) if folder.exists() else []


HOSTILE = [
    pytest.param("../escaped/x.gguf", "climbs with '..'", id="dotdot"),
    pytest.param("a/../../escaped/x.gguf", "climbs with '..'", id="dotdot-after-a-folder"),
    pytest.param("./../escaped/x.gguf", "climbs with '..'", id="dot-then-dotdot"),
    pytest.param("ABSOLUTE/escaped/x.gguf", "is absolute", id="absolute"),
    pytest.param(".", "names the models folder itself", id="dot"),
    pytest.param("", "is empty", id="empty"),
    pytest.param("a\x00b.gguf", "holds a NUL byte", id="nul"),
    pytest.param("..\\escaped\\x.gguf", "holds a backslash", id="backslashes"),
]


@pytest.mark.parametrize(("key", "why"), HOSTILE)
def test_a_hostile_key_in_the_sources_document_is_refused_and_nothing_is_fetched(
    hub: LocalHub, tmp_path: Path, models: Path, key: str, why: str
) -> None:
    key = key.replace("ABSOLUTE", str(tmp_path))
    document = sources(tmp_path, key)
    result = pull(hub, tmp_path, "--sources", document, "--models-dir", models)
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert f"{document}:3:" in result.stderr  # the key's line: version, files, then the key
    assert why in result.stderr
    assert hub.heads == 0 and hub.fetched() == 0
    assert everything_under(models) == [] and not (tmp_path / "escaped").exists()


def test_a_dry_run_refuses_a_hostile_key_too(hub: LocalHub, tmp_path: Path, models: Path) -> None:
    result = pull(hub, tmp_path, "--sources", sources(tmp_path, "../escaped/x.gguf"), "--dry-run")
    assert result.returncode == 1 and "climbs with '..'" in result.stderr
    assert hub.heads == 0


def outside_link(models: Path, tmp_path: Path) -> Path:
    """`models/org` is a symbolic link to a folder outside the models folder."""
    outside = tmp_path / "outside"
    (outside / "repo").mkdir(parents=True)
    (models / "org").symlink_to(outside)
    return outside


def test_a_symbolic_link_out_of_the_models_folder_is_refused_and_nothing_is_written_through_it(
    hub: LocalHub, tmp_path: Path, models: Path
) -> None:
    outside = outside_link(models, tmp_path)
    result = pull(hub, tmp_path, "--sources", sources(tmp_path, REL), "--models-dir", models)
    assert result.returncode == 1, result.stderr
    assert (
        f"error: model file path '{REL}' leads out of the models folder {models} through a symbolic link"
        in (result.stderr)
    )
    assert hub.fetched() == 0 and everything_under(outside) == ["repo"]
    dry = pull(hub, tmp_path, "--sources", sources(tmp_path, REL), "--models-dir", models, "--dry-run")
    assert dry.returncode == 1 and "leads out of the models folder" in dry.stderr


def test_a_file_that_is_a_symbolic_link_out_of_the_folder_is_refused(
    hub: LocalHub, tmp_path: Path, models: Path
) -> None:
    (models / REPO_ID).mkdir(parents=True)
    (models / REL).symlink_to(tmp_path / "elsewhere.gguf")  # dangling: pull would create it
    result = pull(hub, tmp_path, "--sources", sources(tmp_path, REL), "--models-dir", models)
    assert result.returncode == 1 and "leads out of the models folder" in result.stderr
    assert not (tmp_path / "elsewhere.gguf").exists() and hub.fetched() == 0


def test_links_that_stay_in_the_folder_and_a_folder_that_is_a_link_are_fine(
    hub: LocalHub, tmp_path: Path, models: Path
) -> None:
    (models / "real").mkdir()
    (models / "org").symlink_to(models / "real")  # inside: the file lands in real/repo/
    linked = tmp_path / "linked-models"
    linked.symlink_to(models)
    result = pull(hub, tmp_path, "--sources", sources(tmp_path, REL), "--models-dir", linked)
    assert result.returncode == 0, result.stderr
    assert (models / "real" / "repo" / NAME).read_bytes() == DATA


def site(root: Path, models: Path, file: str) -> Path:
    (root / "models.d").mkdir(parents=True)
    (root / "halogen.yaml").write_text(
        yaml.safe_dump(
            {
                "deployment": {"name": "llm", "models": {"hostPath": str(models), "mountPath": "/models"}},
                "backends": {"cpu": {"args": ["-ngl", "0"]}},
            }
        )
    )
    model = {"file": file, "contextSize": 1024, "source": {"repo": REPO_ID, "file": NAME, "revision": COMMIT}}
    (root / "models.d" / "m.yaml").write_text(yaml.safe_dump(model))
    return root


@pytest.mark.parametrize(
    ("file", "why"),
    [
        pytest.param("../escaped/x.gguf", "climbs with '..'", id="dotdot"),
        pytest.param("org\\..\\..\\escaped\\x.gguf", "holds a backslash", id="backslashes"),
    ],
)
def test_a_sites_file_outside_the_models_folder_is_refused_at_its_position(
    hub: LocalHub, tmp_path: Path, models: Path, file: str, why: str
) -> None:
    root = site(tmp_path / "site", models, file)
    result = pull(hub, tmp_path, "--src", root)
    assert result.returncode == 1, result.stderr
    (line,) = [x for x in result.stderr.splitlines() if "models.d/m.yaml" in x]
    assert "file:" in line and "is not under the models mount /models" in line and why in line
    assert hub.heads == 0 and everything_under(models) == []


def test_a_sites_file_behind_a_link_out_of_the_folder_is_neither_pulled_nor_locked(
    hub: LocalHub, tmp_path: Path, models: Path
) -> None:
    outside = outside_link(models, tmp_path)
    root = site(tmp_path / "site", models, REL)
    pulled = pull(hub, tmp_path, "--src", root)
    assert pulled.returncode == 1 and "leads out of the models folder" in pulled.stderr
    assert hub.fetched() == 0 and everything_under(outside) == ["repo"]
    # A GGUF placed out there by hand is not read by `halogen lock` either.
    write_sparse(outside / "repo" / NAME, TINY)
    locked = subprocess.run(
        [str(HALOGEN), "lock", "--src", str(root)], capture_output=True, text=True, timeout=120
    )
    assert locked.returncode == 1, locked.stderr
    (line,) = [x for x in locked.stderr.splitlines() if "models.d/m.yaml" in x]
    assert "file:" in line and "leads out of the models folder" in line
    assert not (root / "halogen.lock").exists()


def test_a_lock_key_outside_the_models_folder_is_an_error_at_the_key(tmp_path: Path, models: Path) -> None:
    root = site(tmp_path / "site", models, REL)
    digest = hashlib.sha256(DATA).hexdigest()
    write_lock(root / "halogen.lock", Lock({"../escaped/x.gguf": LockedFile(len(DATA), digest)}))
    result = subprocess.run(
        [str(HALOGEN), "validate", str(root)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 1
    assert (
        "halogen.lock:4:" in result.stderr
    )  # the key, under the header, version and files and "climbs with '..'" in result.stderr
    assert "Traceback" not in result.stderr
