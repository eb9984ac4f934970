"""`halogen fit`: the site's fit as a table, or as JSON: estimates, sets, pairs kept apart."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import click

from halogen.commands import sites
from halogen.commands.report import emit, summary
from halogen.compiler import fit_report, pipeline
from halogen.diagnostics import Format, Invalid, errors


def run(paths: Sequence[Path], src: Path | None, *, fmt: Format) -> int:
    """Print the fit of the site the paths (or the current folder) belong to; the site's
    problems, if it does not compile, and exit 1."""
    root, found = sites.one(paths, src)
    if root is None:
        emit(found, "text" if fmt == "json" else fmt)
        return 1
    try:
        compiled = pipeline.compile_config(root)
    except Invalid as exc:
        shown = sites.relocate(exc.diagnostics, root, fmt)
        emit(shown, "text" if fmt == "json" else fmt)
        summary(shown, fmt, writes=False)
        return 1
    found = sites.relocate(compiled.warnings, root, fmt)
    if compiled.placement is not None:  # a site with several nodes: each node's fit
        views = {node_id: part.site for node_id, part in compiled.nodes.items()}
        if fmt == "json":
            document = fit_report.nodes_document(views, compiled.placement)
            document["diagnostics"] = [d.__dict__ for d in found]
            click.echo(json.dumps(document, indent=2))
            return 0
        emit(found, fmt)
        click.echo(fit_report.nodes_text(views, compiled.placement), nl=False)
        return 1 if errors(found) else 0
    report = fit_report.report(compiled.site)
    if fmt == "json":
        document = fit_report.document(report)
        document["diagnostics"] = [d.__dict__ for d in found]
        click.echo(json.dumps(document, indent=2))
        return 0
    emit(found, fmt)
    click.echo(fit_report.text(report), nl=False)
    return 1 if errors(found) else 0
