"""`halogen validate`: every rule of build but the manifest checks, for pre-commit; writes nothing."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import click

from halogen.commands import sites
from halogen.commands.report import emit, summary
from halogen.compiler import coverage, pipeline
from halogen.diagnostics import Diagnostic, Format, Invalid, errors


def run(paths: Sequence[Path], *, fmt: Format, src: Path | None = None, staged: bool = False) -> int:
    """Validate every site the paths belong to (the whole site: rules span files)."""
    wanted = sites.wanted(paths, staged=staged)
    if staged and not wanted and src is None:
        return 0  # pre-commit: nothing in this commit belongs to a site
    roots, found = sites.locate(wanted, src)
    for root in roots:
        diagnostics: list[Diagnostic]
        try:
            compiled = pipeline.compile_config(root)
        except Invalid as exc:
            diagnostics = list(exc.diagnostics)
        else:
            diagnostics = list(compiled.warnings)
            note = coverage.notice(compiled.site)
            if note is not None and fmt == "text":
                click.echo(f"halogen: {note}", err=True)
        found += sites.relocate(diagnostics, root, fmt)
    emit(found, fmt)
    summary(found, fmt, writes=False)
    return 1 if errors(found) else 0
