"""The one place diagnostics reach the user."""

from __future__ import annotations

from collections.abc import Sequence

import click

from halogen.diagnostics import Diagnostic, Format, errors, render


def emit(diagnostics: Sequence[Diagnostic], fmt: Format) -> None:
    if diagnostics or fmt == "json":
        click.echo(render(diagnostics, fmt), err=fmt != "json")


def summary(diagnostics: Sequence[Diagnostic], fmt: Format) -> None:
    if fmt != "text":
        return
    count = len(errors(diagnostics))
    if count:
        click.echo(f"halogen: {count} error{'s' * (count != 1)}; nothing was written", err=True)
