"""`halogen import`: write a site from a llama-swap config, and say what changed."""

from __future__ import annotations

from pathlib import Path

import click

from halogen.commands.report import emit
from halogen.compiler.site.load import MODELS_DIR, SITE_FILE
from halogen.diagnostics import Diagnostic, Format, Invalid
from halogen.importing import notes
from halogen.importing.site import NotImported, import_site, refused, write


def run(config: Path, target: Path, manifests: Path | None, *, fmt: Format) -> int:
    blocked = refused(target)
    if blocked is not None:  # before any work: the answer would be the same after it
        emit([blocked], fmt)
        return 1
    try:
        imported = import_site(config, manifests)
        write(target, imported.files)
    except Invalid as exc:
        if isinstance(exc, NotImported) and fmt == "text":
            click.echo(notes.text(exc.notes), err=True)
        emit(exc.diagnostics, fmt)
        click.echo("halogen import: nothing was written", err=True)
        return 1
    except OSError as exc:
        emit([Diagnostic(str(target), 0, 0, "", f"cannot write: {exc.strerror or exc}")], fmt)
        return 1
    click.echo(notes.text(imported.notes), err=True)
    for difference in imported.unexpected:
        click.echo(
            f"halogen import: warning: {difference.model}: {difference.key} was {difference.before!r}, "
            f"is {difference.after!r} (not intended: please report it)",
            err=True,
        )
    models = sum(1 for name in imported.files if name.startswith(f"{MODELS_DIR}/"))
    click.echo(
        f"halogen import: wrote {target}/: {SITE_FILE}, {models} model file{'s' * (models != 1)} in "
        f"{MODELS_DIR}/ and {notes.REPORT_FILE}; next: read the report, then halogen build",
        err=True,
    )
    return 0
