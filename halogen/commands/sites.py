"""Which site a command works on, and how its diagnostics name files.

A site is a folder holding halogen.yaml; it may sit anywhere in a repository (`apps/llm/` in a
Flux repo). Without `--src`, every command looks for it upward from each path given, or from the
current folder, as git looks for `.git`: `locate` is the one place that does."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import replace
from pathlib import Path, PurePosixPath

import click

from halogen.compiler.site.load import MODELS_DIR, SITE_FILE
from halogen.diagnostics import Diagnostic, Format

OUT_DIR = "out"


def site_root(path: Path) -> Path | None:
    """The nearest folder at or above `path` that holds halogen.yaml (`path` need not exist:
    a file deleted from git's index still names its site)."""
    start = path.resolve()
    for folder in [start, *start.parents] if start.is_dir() else list(start.parents):
        if (folder / SITE_FILE).is_file():
            return folder
    return None


def _missing(where: str) -> Diagnostic:
    return Diagnostic(
        where,
        0,
        0,
        "",
        f"no {SITE_FILE} here or in a folder above",
        "run inside a halogen site, pass a path inside one, or name its folder with --src",
    )


def locate(paths: Sequence[Path], src: Path | None) -> tuple[list[Path], list[Diagnostic]]:
    """The sites to work on, in order, and a diagnostic for each path that belongs to none.
    `--src` names the site folder exactly; paths (or the current folder) find it upward."""
    if src is not None:  # the loader says what is wrong with a halogen.yaml that is there
        if not (src / SITE_FILE).exists() and not (src / SITE_FILE).is_symlink():
            return [], [
                Diagnostic(
                    SITE_FILE,
                    0,
                    0,
                    "",
                    f"not found in {src}, the folder --src names",
                    f"--src names the folder that holds {SITE_FILE} and {MODELS_DIR}/",
                )
            ]
        return [src.resolve()], []
    roots: list[Path] = []
    found: list[Diagnostic] = []
    for path in paths or [Path(".")]:
        root = site_root(path)
        if root is None:
            found.append(_missing(str(path)))
        elif root not in roots:
            roots.append(root)
    return roots, found


def one(paths: Sequence[Path], src: Path | None) -> tuple[Path | None, list[Diagnostic]]:
    """The site of a command that works on one (lock, pull, schema): found as `locate` finds
    them; paths in two sites are a usage error, as `--out` with two sites is for build."""
    roots, found = locate(paths, src)
    if len(roots) > 1:
        raise click.UsageError(
            "these paths belong to several sites: " + ", ".join(str(r) for r in roots) + "; give one"
        )
    return (roots[0] if roots and not found else None), found


def _is_site_file(path: PurePosixPath) -> bool:
    return path.name == SITE_FILE or (
        len(path.parts) >= 2 and path.parts[-2] in (MODELS_DIR, OUT_DIR) and not path.name.startswith(".")
    )


def wanted(paths: Sequence[Path], *, staged: bool) -> list[Path]:
    """The paths a command works on. From pre-commit (`staged`), whose patterns are loose, only
    those that belong to a site (another `out/` is not ours), with the site files the commit
    deletes, which pre-commit does not pass."""
    if not staged:
        return list(paths)
    return [p for p in [*paths, *deleted_in_git()] if site_root(p) is not None]


def deleted_in_git() -> list[Path]:
    """Site files this commit deletes (pre-commit passes a hook no deleted file, so a hook that
    asks for them finds them itself): staged deletions, or, when pre-commit runs between two
    refs (PRE_COMMIT_FROM_REF/TO_REF), deletions between them. Paths are from the current folder."""
    refs = [os.environ.get("PRE_COMMIT_FROM_REF", ""), os.environ.get("PRE_COMMIT_TO_REF", "")]
    diff = ["git", "diff", "--name-only", "--no-renames", "--diff-filter=D", "-z", "--relative"]
    diff += [f"{refs[0]}...{refs[1]}"] if all(refs) else ["--cached"]
    try:
        listing = subprocess.run(diff, capture_output=True, check=False, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return []
    if listing.returncode != 0:
        return []
    names = [n for n in listing.stdout.decode("utf-8", "surrogateescape").split("\0") if n]
    return [Path(n) for n in names if _is_site_file(PurePosixPath(n))]


def repository_root(folder: Path) -> Path | None:
    """The top of the git work tree holding `folder` (a `.git` folder or file), if any."""
    for candidate in [folder, *folder.parents]:
        if (candidate / ".git").exists():
            return candidate
    return None


def _base(root: Path, fmt: Format) -> Path:
    """What diagnostics' paths are relative to: the repository for GitHub annotations (which
    land on repository paths), else the current folder when the site lies within it, else the
    site itself."""
    if fmt == "github" and (top := repository_root(root)) is not None:
        return top
    cwd = Path.cwd().resolve()
    return cwd if cwd == root or cwd in root.parents else root


def relocate(diagnostics: Iterable[Diagnostic], root: Path, fmt: Format) -> list[Diagnostic]:
    """Diagnostics whose files are named relative to the site `root`, renamed for the reader."""
    base = _base(root, fmt)
    out = []
    for d in diagnostics:
        if d.file and not Path(d.file).is_absolute():
            d = replace(d, file=Path(os.path.relpath(root / d.file, base)).as_posix())
        out.append(d)
    return out
