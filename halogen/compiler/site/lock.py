"""`halogen.lock`: what the site's model files are, written by `halogen lock`, committed with the site.

The models live on the node, not in Git; the lock is how the compiler (and CI) knows them: each
file's size and sha256, and the facts its GGUF header states. The file is YAML, deterministic
(same files, same bytes), and never edited by hand:

    # halogen.lock: written by `halogen lock`; commit it with the site. Do not edit.
    version: 1
    files:
      Qwen/Qwen2.5-Coder-7B-Instruct-GGUF/qwen2.5-coder-7b-instruct-q5_k_m.gguf:
        size: 5444831072
        sha256: 0123...
        gguf: {architecture: qwen2, contextLength: 32768, ...}

Paths are relative to the models mount. `missing` lists the files the site loads that were not
there when `halogen lock` ran (a partial lock): the build names their models, whose memory it
cannot check. `gguf` is absent until `halogen lock` has read the
header (`halogen pull` records size and sha256 on a first download). This module reads and writes
the file; it does not read GGUF files (that is halogen.llamacpp.gguf_header, which needs the
`gguf` package), and the facts' own record is halogen.llamacpp.gguf_facts.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
)

from halogen import models_folder, yamlio
from halogen.diagnostics import Diagnostic, Invalid
from halogen.llamacpp.gguf_facts import GgufFacts
from halogen.typed import parse

LOCK_FILE = "halogen.lock"
VERSION = 1
HEADER = "# halogen.lock: written by `halogen lock`; commit it with the site. Do not edit.\n"


class _Entry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    size: int = Field(ge=0)
    sha256: Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]
    gguf: GgufFacts | None = None


class _LockFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    version: int
    files: dict[Annotated[str, AfterValidator(models_folder.validator)], _Entry] = {}
    missing: list[Annotated[str, AfterValidator(models_folder.validator)]] = []


@dataclass(frozen=True)
class LockedFile:
    size: int
    sha256: str
    gguf: GgufFacts | None = None


@dataclass(frozen=True)
class Lock:
    files: Mapping[str, LockedFile] = field(default_factory=dict)
    missing: tuple[str, ...] = ()
    """Files the site loads that `halogen lock` did not find: a partial lock."""

    @property
    def written(self) -> bool:
        """Whether `halogen lock` (or pull) has written this site's lock at all."""
        return bool(self.files or self.missing)

    def facts(self, path: str) -> GgufFacts | None:
        entry = self.files.get(path)
        return entry.gguf if entry else None


def read_lock(path: Path) -> Lock:
    """The lock at `path`; a missing file is an empty Lock, a bad one raises Invalid with positions."""
    if not path.exists():
        return Lock()
    doc = yamlio.read(path, path.name)
    if doc.data is None:
        return Lock()
    spec, problems = parse(_LockFile, doc)
    if spec is not None and spec.version != VERSION:
        problems.append(
            doc.diagnostic(
                ("version",),
                f"lock version {spec.version} is not {VERSION}",
                "run `halogen lock` with this halogen to rewrite it",
            )
        )
    if spec is None or problems:
        raise Invalid(problems or [Diagnostic(path.name, 0, 0, "", "not a valid lock")])
    return Lock(
        {p: LockedFile(e.size, e.sha256, e.gguf) for p, e in sorted(spec.files.items())},
        tuple(sorted(set(spec.missing) - set(spec.files))),
    )


def _document(lock: Lock) -> dict[str, Any]:
    files: dict[str, Any] = {}
    for path in sorted(lock.files):
        entry = lock.files[path]
        data: dict[str, Any] = {"size": entry.size, "sha256": entry.sha256}
        if entry.gguf is not None:
            facts = entry.gguf.model_dump(mode="json")
            facts["info"] = dict(sorted(facts["info"].items()))
            data["gguf"] = facts
        files[path] = data
    document: dict[str, Any] = {"version": VERSION, "files": files}
    if lock.missing:  # absent when complete: a full lock's bytes are what they always were
        document["missing"] = sorted(lock.missing)
    return document


def dumps(lock: Lock) -> bytes:
    """The lock's bytes: keys in a fixed order, files sorted by path."""
    return yamlio.dump(_document(lock), HEADER).encode("utf-8")


def write_lock(path: Path, lock: Lock) -> bool:
    """Write atomically (a reader sees the old file or the new one); False when unchanged."""
    data = dumps(lock)
    if path.is_file() and path.read_bytes() == data:
        return False
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return True
