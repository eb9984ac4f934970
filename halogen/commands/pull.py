"""`halogen pull`: fetch and verify the site's model files (halogen/hub/ does the work)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import click

from halogen.commands import sites
from halogen.commands.report import emit, summary
from halogen.diagnostics import Diagnostic, Format, Invalid

if TYPE_CHECKING:
    from halogen.modelfiles import FileSource


def _say(line: str) -> None:
    click.echo(f"halogen: {line}", err=True)


def _from_site(root: Path) -> tuple[list[FileSource], Path, list[Diagnostic]]:
    """What the site's models fetch (with halogen.lock's hashes), where, and the warnings."""
    from halogen.compiler import pipeline

    site, wants, found = pipeline.pulled(root)
    return wants, Path(site.spec.deployment.models.hostPath), found


def run(
    src: Path | None,
    sources_file: Path | None,
    models_dir: Path | None,
    models: Sequence[str],
    *,
    dry_run: bool,
    progress: bool,
    fmt: Format,
) -> int:
    from halogen import image
    from halogen.compiler.render import wanted
    from halogen.compiler.site.lock import LOCK_FILE, Lock, LockedFile, read_lock, write_lock
    from halogen.hub import pull

    root: Path | None = None
    try:
        if sources_file is not None:
            wants = wanted.read(sources_file)
            default_dir = Path(image.MODELS_DIR)
            warnings: list[Diagnostic] = []
        else:
            root, missing = sites.one([], src)
            if root is None:
                raise Invalid(missing)
            wants, default_dir, warnings = _from_site(root)
            warnings = sites.relocate(warnings, root, fmt)
    except Invalid as exc:
        shown = sites.relocate(exc.diagnostics, root, fmt) if root is not None else list(exc.diagnostics)
        emit(shown, fmt)
        summary(shown, fmt)
        return 1
    emit(warnings, fmt)
    chosen, unknown = pull.select(wants, models)
    if unknown:
        names = ", ".join(sorted({m for w in wants for m in w.models})) or "none"
        for name in unknown:
            _say(f"error: no model {name!r} with a source (models with one: {names})")
        return 2
    folder = models_dir or default_dir
    if not chosen:
        _say("nothing to pull: no model names a source")
        return 0
    if dry_run:
        return pull.dry_run(folder, chosen, _say)
    if not folder.is_dir():
        _say(f"error: {folder} is not a folder: create it, or pass --models-dir")
        return 1
    done, failed = pull.pull(folder, chosen, _say, progress=progress)
    if root is not None:
        lock_path = root / LOCK_FILE
        old = read_lock(lock_path)
        learned = {o.path: o for o in done if o.path not in old.files}
        if learned:
            files = dict(old.files)
            files.update({p: LockedFile(o.size, o.sha256) for p, o in learned.items()})
            write_lock(
                lock_path, Lock(dict(sorted(files.items())), tuple(m for m in old.missing if m not in files))
            )
            _say(f"recorded {len(learned)} file(s) in {LOCK_FILE}: commit it with the site")
    _say(f"{len(done)} in place, {failed} failed" if failed else f"{len(done)} file(s) in place, verified")
    return 1 if failed else 0
