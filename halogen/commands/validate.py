from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from halogen import pipeline
from halogen.commands.report import emit, summary
from halogen.diagnostics import Diagnostic, Format, Invalid, errors
from halogen.spec.load import SITE_FILE


def site_root(path: Path) -> Path | None:
    """The nearest folder at or above `path` that holds halogen.yaml."""
    start = path.resolve()
    for folder in [start, *start.parents] if start.is_dir() else list(start.parents):
        if (folder / SITE_FILE).is_file():
            return folder
    return None


def run(paths: Sequence[Path], *, fmt: Format) -> int:
    """Validate every site the paths belong to (the whole site: rules span files)."""
    roots: list[Path] = []
    found: list[Diagnostic] = []
    for path in paths or [Path(".")]:
        root = site_root(path)
        if root is None:
            found.append(
                Diagnostic(
                    str(path),
                    0,
                    0,
                    "",
                    f"no {SITE_FILE} here or above",
                    "run inside a halogen site, or pass a path inside one",
                )
            )
        elif root not in roots:
            roots.append(root)
    for root in roots:
        try:
            found += pipeline.compile_config(root).warnings
        except Invalid as exc:
            found += exc.diagnostics
    emit(found, fmt)
    summary(found, fmt)
    return 1 if errors(found) else 0
