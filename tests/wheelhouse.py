"""What a distribution pulls in, and a wheelhouse made offline from what this venv has installed.

Tests that run pip (pre-commit building a hook environment, the documented CI workflow) reach
no index: they install with `--no-index --find-links` from wheels repacked here from the
installed distributions' own files, as listed in their RECORD."""

from __future__ import annotations

import base64
import hashlib
import importlib.metadata as metadata
import sys
import zipfile
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

# pip's own bookkeeping, written at install time: not part of a wheel.
_INSTALL_ONLY = {"INSTALLER", "REQUESTED", "direct_url.json", "RECORD"}


def closure(
    requires: Callable[[str], Iterable[str] | None], name: str, extras: Iterable[str], python: str
) -> set[str]:
    """The canonical names of `name[extras]` and everything it requires, by each
    distribution's own metadata (`requires(name)` gives its Requires-Dist lines, None when the
    distribution is not installed)."""
    seen: set[tuple[str, frozenset[str]]] = set()

    def visit(dist: str, wanted: frozenset[str]) -> None:
        key = canonicalize_name(dist)
        if (key, wanted) in seen:
            return
        seen.add((key, wanted))
        lines = requires(key)
        assert lines is not None, f"{dist} is required but not installed"
        for text in lines:
            requirement = Requirement(text)
            marker = requirement.marker or Marker("python_version >= '0'")
            if any(marker.evaluate({"python_version": python, "extra": e}) for e in wanted | {""}):
                visit(requirement.name, frozenset(requirement.extras))

    visit(name, frozenset(extras))
    return {key for key, _ in seen}


def installed() -> dict[str, metadata.Distribution]:
    """This interpreter's distributions by canonical name (the first on sys.path wins)."""
    out: dict[str, metadata.Distribution] = {}
    for dist in metadata.distributions():
        out.setdefault(canonicalize_name(dist.metadata["Name"]), dist)
    return out


def _digest(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def _wheel_name(dist: metadata.Distribution) -> str:
    wheel = dist.read_text("WHEEL") or ""
    tags = [line.split(":", 1)[1].strip() for line in wheel.splitlines() if line.startswith("Tag:")]
    parts: list[list[str]] = [[], [], []]
    for tag in tags or ["py3-none-any"]:
        for i, part in enumerate(tag.split("-")):
            if part not in parts[i]:
                parts[i].append(part)
    name = canonicalize_name(dist.metadata["Name"]).replace("-", "_")
    return f"{name}-{dist.version}-{'-'.join('.'.join(p) for p in parts)}.whl"


def repack(dist: metadata.Distribution, folder: Path) -> Path:
    """An installed distribution back into a wheel: the files its RECORD lists under
    site-packages (scripts are made again from entry points on install), a fresh RECORD."""
    path = folder / _wheel_name(dist)
    info = next((f.parts[0] for f in dist.files or [] if f.parts and f.parts[0].endswith(".dist-info")), None)
    assert info is not None, f"{dist.metadata['Name']} has no .dist-info in its RECORD"
    record = []
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as wheel:
        for file in dist.files or []:
            if file.parts[0] == ".." or "__pycache__" in file.parts:
                continue
            if file.parts[0] == info and file.name in _INSTALL_ONLY:
                continue
            data = Path(str(dist.locate_file(file))).read_bytes()
            wheel.writestr(file.as_posix(), data)
            record.append(f"{file.as_posix()},{_digest(data)},{len(data)}")
        record.append(f"{info}/RECORD,,")
        wheel.writestr(f"{info}/RECORD", "\n".join(record) + "\n")
    return path


def make(folder: Path, wanted: Mapping[str, Iterable[str]], *, skip: Iterable[str] = ()) -> Path:
    """A wheelhouse in `folder` holding each `name: extras` of `wanted` and what it requires,
    as installed here, less the distributions in `skip` (the project itself, which pip builds
    from its source)."""
    dists = installed()
    python = f"{sys.version_info[0]}.{sys.version_info[1]}"

    def requires(name: str) -> list[str] | None:
        dist = dists.get(name)
        return None if dist is None else list(dist.requires or [])

    names: set[str] = set()
    for name, extras in wanted.items():
        names |= closure(requires, name, extras, python)
    folder.mkdir(parents=True, exist_ok=True)
    for name in sorted(names - {canonicalize_name(s) for s in skip}):
        repack(dists[name], folder)
    return folder
