from __future__ import annotations

from pathlib import Path

import click

from halogen import output, pipeline
from halogen.commands.report import emit, summary
from halogen.diagnostics import Format, Invalid


def run(src: Path, out: Path, *, check: bool, fmt: Format) -> int:
    try:
        files, warnings = pipeline.build(src)
    except Invalid as exc:
        emit(exc.diagnostics, fmt)
        summary(exc.diagnostics, fmt)
        return 1
    emit(warnings, fmt)
    label = out.name if out.parent.resolve() == src.resolve() else str(out)
    if check:
        stale = output.diff(out, files, label)
        if stale:
            click.echo(stale, nl=False)
            click.echo(f"halogen: {label}/ is stale: run `halogen build` and commit the result", err=True)
            return 1
        return 0
    try:
        changed = output.write(out, files)
    except Invalid as exc:
        emit(exc.diagnostics, fmt)
        return 1
    except OSError as exc:
        click.echo(f"halogen: cannot write {out}: {exc.strerror or exc}", err=True)
        return 1
    if fmt == "text":
        click.echo(f"halogen: {'wrote' if changed else 'unchanged'} {label}/ ({len(files)} files)", err=True)
    return 0
