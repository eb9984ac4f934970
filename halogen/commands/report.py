"""The one place diagnostics reach the user."""

from __future__ import annotations

from collections.abc import Sequence

import click

from halogen.diagnostics import Diagnostic, Format, errors, render


def emit(diagnostics: Sequence[Diagnostic], fmt: Format) -> None:
    if diagnostics or fmt == "json":
        click.echo(render(diagnostics, fmt), err=fmt != "json")


def plural(count: int, noun: str) -> str:
    """`1 file`, `2 files`."""
    return f"{count} {noun}{'s' * (count != 1)}"


def summary(diagnostics: Sequence[Diagnostic], fmt: Format, *, writes: bool = True) -> None:
    """The count of errors; a command that would have written says it wrote nothing (validate
    and the --check modes never write, so they do not say it)."""
    if fmt != "text":
        return
    count = len(errors(diagnostics))
    if count:
        click.echo(f"halogen: {plural(count, 'error')}{'; nothing was written' * writes}", err=True)
