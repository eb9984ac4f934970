"""`halogen lock`: hash and read every GGUF the site's models load, into halogen.lock."""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

import click

from halogen import models_folder
from halogen.commands import sites
from halogen.commands.report import emit, plural, summary
from halogen.compiler.facts import used_files
from halogen.compiler.site.load import Model, Site, load
from halogen.compiler.site.lock import LOCK_FILE, Lock, LockedFile, dumps, read_lock, write_lock
from halogen.diagnostics import Diagnostic, Format, Invalid, errors


def _problem(
    models: dict[str, Model], model_ids: list[str], message: str, hint: str, *, warning: bool = False
) -> Diagnostic:
    model = models[model_ids[0]]
    return model.doc.diagnostic(
        ("cmd",) if model.spec.cmd else ("file",), message, hint, severity="warning" if warning else "error"
    )


def locked(site: Site, read: Mapping[str, LockedFile]) -> Lock:
    """The lock of `site` from what was read of the files it loads (from the models folder, or
    from anywhere else that gives size, sha256 and header facts per file): those read are
    locked, the others recorded as missing. Files no model loads are left out."""
    wanted = used_files(site)
    return Lock({p: read[p] for p in wanted if p in read}, tuple(p for p in wanted if p not in read))


def scan(root: Path, models_dir: Path | None, *, strict: bool = False) -> tuple[Lock, list[Diagnostic]]:
    """The lock the files on disk give now, and every problem met on the way. A file that is not
    there is a warning (the lock records it as missing), an error when `strict` or when none is."""
    try:
        from halogen.llamacpp import gguf_header
    except ImportError:  # the image and `pip install halogen-llamaswap[build]` leave the reader out
        raise Invalid(
            [
                Diagnostic(
                    LOCK_FILE,
                    0,
                    0,
                    "",
                    "the gguf package is missing",
                    "pip install 'halogen-llamaswap[lock]'",
                )
            ]
        ) from None
    site, found = load(root)
    found = [d for d in found if d.file != LOCK_FILE]  # the lock being rewritten may be broken
    if site is None:
        raise Invalid(found)
    folder = models_dir or Path(site.spec.deployment.models.hostPath)
    files = used_files(site)
    models = site.models
    present: dict[str, Path] = {}
    outside: set[str] = set()
    for rel, ids in files.items():
        try:
            path = models_folder.confine(folder, rel)
        except models_folder.OutsideModels as exc:
            found.append(_problem(models, ids, str(exc), "the pod sees only the models folder"))
            outside.add(rel)
            continue
        if path.is_file():
            present[rel] = path
    # None there: the wrong node or the wrong --models-dir, not a partial lock worth writing.
    partial = not strict and bool(present)
    for rel, ids in files.items():
        if rel not in present and rel not in outside:
            found.append(
                _problem(
                    models,
                    ids,
                    f"{folder / rel} is not a file",
                    "run on the node that holds the models, or pass --models-dir"
                    + ("; halogen.lock records it as missing" if partial else ""),
                    warning=partial,
                )
            )
    entries: dict[str, LockedFile] = {}
    total = sum(p.stat().st_size for p in present.values())
    with click.progressbar(length=total, label="hashing", file=sys.stderr) as bar:
        for rel, path in present.items():
            bar.label = rel
            try:
                facts = gguf_header.read_facts(path)
            except (ValueError, OSError, IndexError, KeyError, MemoryError) as exc:
                hint = getattr(exc, "hint", "")  # gguf_header.Unreadable says what to do
                found.append(_problem(models, files[rel], f"{path} is not a readable GGUF file: {exc}", hint))
                continue
            size, sha256 = gguf_header.digest(path, bar.update)
            entries[rel] = LockedFile(size, sha256, facts)
    return locked(site, entries), found


def _differences(old: Lock, new: Lock) -> list[str]:
    out = []
    for rel in sorted(set(old.files) | set(new.files)):
        before, after = old.files.get(rel), new.files.get(rel)
        if before is None:
            out.append(f"{rel}: not in {LOCK_FILE}")
        elif after is None:
            out.append(f"{rel}: locked, but no model uses it")
        elif (before.size, before.sha256) != (after.size, after.sha256):
            out.append(f"{rel}: size or sha256 differs from {LOCK_FILE}")
        elif before.gguf != after.gguf:
            out.append(f"{rel}: header facts differ from {LOCK_FILE}")
    return out


def _from_hub(root: Path) -> tuple[Lock, list[Diagnostic]]:
    """`--remote`: the sourced models' files as the Hub states them (halogen/compiler/remote_lock.py)."""
    try:
        import gguf  # noqa: F401
        import huggingface_hub  # noqa: F401
    except ImportError:
        raise Invalid(
            [
                Diagnostic(
                    LOCK_FILE,
                    0,
                    0,
                    "",
                    "--remote needs the gguf and huggingface_hub packages",
                    "pip install 'halogen-llamaswap[lock,pull]'",
                )
            ]
        ) from None
    from halogen.compiler import remote_lock
    from halogen.hub.download import human

    new, found, reads = remote_lock.scan(root)
    for read in reads:
        how = f"header read from the Hub ({human(read.fetched)})" if read.fetched else "unchanged on the Hub"
        click.echo(f"halogen: {read.model}: {read.path}, {human(read.size)}: {how}", err=True)
    return new, found


def run(
    paths: Sequence[Path],
    src: Path | None,
    models_dir: Path | None,
    *,
    check: bool,
    fmt: Format,
    strict: bool = False,
    remote: bool = False,
) -> int:
    """Lock the site the paths (or the current folder) belong to, or `src`. A file that is not
    there fails the run only under `strict` or `check`; otherwise the lock records it as missing."""
    root, found = sites.one(paths, src)
    if root is None:
        emit(found, fmt)
        return 1
    lock_path = root / LOCK_FILE
    try:
        # Writing replaces the lock whatever it holds (a broken one included); --check compares.
        old = read_lock(lock_path) if check else Lock()
        new, found = _from_hub(root) if remote else scan(root, models_dir, strict=strict or check)
    except Invalid as exc:
        shown = sites.relocate(exc.diagnostics, root, fmt)
        emit(shown, fmt)
        summary(shown, fmt, writes=not check)
        return 1
    found = sites.relocate(found, root, fmt)
    emit(found, fmt)
    if errors(found):
        summary(found, fmt, writes=not check)
        return 1
    if check:
        stale = _differences(old, new)
        if stale or (lock_path.is_file() and lock_path.read_bytes() != dumps(new)):
            for line in stale or [f"{LOCK_FILE} is not as `halogen lock` writes it"]:
                click.echo(f"halogen: {line}", err=True)
            click.echo(f"halogen: {LOCK_FILE} does not match the files: run `halogen lock`", err=True)
            return 1
        return 0
    changed = write_lock(lock_path, new)
    missing = f"; {len(new.missing)} missing, their models' memory unchecked" if new.missing else ""
    click.echo(
        f"halogen: {'wrote' if changed else 'unchanged'} {LOCK_FILE} ({plural(len(new.files), 'file')}{missing})",
        err=True,
    )
    if new.missing:
        click.echo(
            "halogen: run `halogen lock` again where the missing files are, or `halogen pull` them; "
            "--strict makes a missing file an error",
            err=True,
        )
    return 0
