"""`halogen lock`: hash and read every GGUF the site's models load, into halogen.lock."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from halogen import models_folder
from halogen.commands.report import emit, summary
from halogen.diagnostics import Diagnostic, Format, Invalid, errors
from halogen.facts import used_files
from halogen.lock import LOCK_FILE, Lock, LockedFile, dumps, read_lock, write_lock
from halogen.spec.load import Model, load


def _problem(models: dict[str, Model], model_ids: list[str], message: str, hint: str) -> Diagnostic:
    model = models[model_ids[0]]
    return model.doc.diagnostic(("cmd",) if model.spec.cmd else ("file",), message, hint)


def scan(root: Path, models_dir: Path | None) -> tuple[Lock, list[Diagnostic]]:
    """The lock the files on disk give now, and every problem met on the way."""
    try:
        from halogen import gguf_header
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
    for rel, ids in files.items():
        try:
            path = models_folder.confine(folder, rel)
        except models_folder.OutsideModels as exc:
            found.append(_problem(models, ids, str(exc), "the pod sees only the models folder"))
            continue
        if path.is_file():
            present[rel] = path
        else:
            found.append(
                _problem(
                    models,
                    ids,
                    f"{path} is not a file",
                    "run on the node that holds the models, or pass --models-dir",
                )
            )
    entries: dict[str, LockedFile] = {}
    total = sum(p.stat().st_size for p in present.values())
    with click.progressbar(length=total, label="hashing", file=sys.stderr) as bar:
        for rel, path in present.items():
            bar.label = rel
            try:
                facts = gguf_header.read_facts(path)
            except (ValueError, OSError, IndexError, KeyError) as exc:
                found.append(_problem(models, files[rel], f"{path} is not a readable GGUF file: {exc}", ""))
                continue
            size, sha256 = gguf_header.digest(path, bar.update)
            entries[rel] = LockedFile(size, sha256, facts)
    return Lock(entries), found


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


def run(root: Path, models_dir: Path | None, *, check: bool, fmt: Format) -> int:
    lock_path = root / LOCK_FILE
    try:
        # Writing replaces the lock whatever it holds (a broken one included); --check compares.
        old = read_lock(lock_path) if check else Lock()
        new, found = scan(root, models_dir)
    except Invalid as exc:
        emit(exc.diagnostics, fmt)
        summary(exc.diagnostics, fmt)
        return 1
    emit(found, fmt)
    if errors(found):
        summary(found, fmt)
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
    click.echo(
        f"halogen: {'wrote' if changed else 'unchanged'} {LOCK_FILE} ({len(new.files)} files)", err=True
    )
    return 0
