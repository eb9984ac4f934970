"""The source record: one model file under the models folder, where it comes from on the Hugging
Face Hub and, when halogen.lock knows it, its size and sha256. The compiler derives it from the
site (`compiler.site.sources`), `halogen pull` and the pull Job fetch it (`hub/`): one record, written
once here, below both. Also the names of a split GGUF's parts, which all three need."""

from __future__ import annotations

import re
from dataclasses import dataclass

# A Git commit: a revision that pins a file, where a branch or a tag can move.
COMMIT = re.compile(r"^[0-9a-f]{40}$")
# llama.cpp's split naming (`llama_split_path`, src/llama.cpp): <prefix>-00001-of-00003.gguf.
SPLIT = re.compile(r"^(?P<prefix>.*)-(?P<part>\d{5})-of-(?P<count>\d{5})\.gguf$")


def is_commit(revision: str) -> bool:
    """Whether `revision` is a commit; a branch or a tag can move under the same name."""
    return bool(COMMIT.match(revision))


def split_parts(name: str) -> list[str]:
    """Every part of a split GGUF named by its first part; the name itself otherwise."""
    match = SPLIT.match(name)
    if match is None:
        return [name]
    count = int(match["count"])
    return [f"{match['prefix']}-{i:05d}-of-{count:05d}.gguf" for i in range(1, count + 1)]


@dataclass(frozen=True, order=True)
class FileSource:
    """One file to have under the models folder: `path` there, from `file` in `repo` at
    `revision`, for `models`; `size` and `sha256` when halogen.lock holds them."""

    path: str
    repo: str
    file: str
    revision: str
    models: tuple[str, ...]
    size: int | None = None
    sha256: str | None = None

    @property
    def pinned(self) -> bool:
        return is_commit(self.revision)
