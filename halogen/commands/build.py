from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

import click

from halogen.commands import sites
from halogen.commands.report import emit, plural, summary
from halogen.compiler import coverage, fit_report, output, pipeline
from halogen.compiler.site.load import Site, load
from halogen.diagnostics import Diagnostic, Format, Invalid, errors


def _label(out: Path, root: Path) -> str:
    """How diagnostics name `out`: relative to the site when inside it, else in full."""
    resolved = out.resolve()
    return resolved.relative_to(root).as_posix() if root in resolved.parents else resolved.as_posix()


def _one(root: Path, out: Path, *, check: bool, fmt: Format) -> list[Diagnostic]:
    """Build (or check) one site; diagnostics name files relative to it."""
    try:
        files, warnings = pipeline.build(root)
    except Invalid as exc:
        return list(exc.diagnostics)
    found = list(warnings)
    label = _label(out, root)
    if check:
        refused = output.problems(out, label)
        if refused:  # what build itself would refuse: "run halogen build" would not help
            return found + refused
        diff, stale = output.stale(out, files, label)
        if fmt == "text":
            click.echo(diff, nl=False)
            if not stale:
                _notice(root)
        return found + stale
    try:
        changed = output.write(out, files, label)
    except Invalid as exc:
        return found + list(exc.diagnostics)
    except OSError as exc:
        return [*found, Diagnostic(label, 0, 0, "", f"cannot write: {exc.strerror or exc}")]
    if fmt == "text":
        site = _notice(root)
        click.echo(
            f"halogen: {'wrote' if changed else 'unchanged'} {label}/ ({plural(len(files), 'file')})",
            err=True,
        )
        if site is not None and sys.stdout.isatty():  # for a person at a terminal: the fit just written
            if site.spec.nodes:  # where the models went, and each node's fit
                compiled = pipeline.compile_config(root)
                views = {node_id: part.site for node_id, part in compiled.nodes.items()}
                if compiled.placement is not None:
                    click.echo(fit_report.nodes_text(views, compiled.placement), nl=False)
            else:
                click.echo(fit_report.text(fit_report.report(site)), nl=False)
    return found


def _notice(root: Path) -> Site | None:
    """After a build that succeeded: say once when the site has no lock; the site, read again."""
    site, _ = load(root)
    note = coverage.notice(site) if site is not None else None
    if note is not None:
        click.echo(f"halogen: {note}", err=True)
    return site


def run(
    paths: Sequence[Path],
    src: Path | None,
    out: Path | None,
    *,
    check: bool,
    fmt: Format,
    staged: bool = False,
) -> int:
    """Build every site the paths belong to; everything found is reported once, at the end
    (one JSON document, one set of annotations)."""
    wanted = sites.wanted(paths, staged=staged)
    if staged and not wanted and src is None:
        return 0  # pre-commit: nothing in this commit belongs to a site
    roots, found = sites.locate(wanted, src)
    if out is not None and len(roots) > 1:
        raise click.UsageError("--out takes one site; these paths belong to several")
    for root in roots:
        found += sites.relocate(_one(root, out or root / "out", check=check, fmt=fmt), root, fmt)
    emit(found, fmt)
    if not check:
        summary(found, fmt)
    return 1 if errors(found) else 0
