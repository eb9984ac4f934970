"""`halogen pull`: every wanted file in place and verified, or a clear reason why not."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

from halogen.hub import download, files
from halogen.hub.download import PullError, human
from halogen.modelfiles import FileSource

Say = Callable[[str], None]


def select(wanted: Sequence[FileSource], models: Sequence[str]) -> tuple[list[FileSource], list[str]]:
    """The files of the named models (all when none is named), and the names that match none."""
    if not models:
        return list(wanted), []
    known = {m for w in wanted for m in w.models}
    unknown = [m for m in models if m not in known]
    return [w for w in wanted if set(w.models) & set(models)], unknown


def _unpinned(w: FileSource, commit: str | None, say: Say) -> None:
    if w.pinned:
        return
    got = f" (this run found commit {commit})" if commit else ""
    pin = (
        "the sha256 in halogen.lock pins its content"
        if w.sha256
        else "nothing pins it until halogen.lock records its sha256"
    )
    say(
        f"warning: {w.path}: revision {w.revision!r} of {w.repo} is a branch or tag, not a commit{got}; "
        f"it can move, and {pin}; set source.revision to a commit to pin it in Git"
    )


def dry_run(models_dir: Path, wanted: Sequence[FileSource], say: Say) -> int:
    """Say what a pull would fetch and how much, fetching nothing."""
    total = 0
    failed = 0
    for w in wanted:
        try:
            final = download.final_path(models_dir, w)
        except PullError as exc:
            say(f"error: {exc}")
            failed += 1
            continue
        mark = files.verified(final) if final.exists() else None
        if mark is not None and w.sha256 in (None, mark):
            say(f"have {w.path} (verified)")
            continue
        if final.exists():
            say(
                f"check {w.path}: on disk, not verified yet: pull reads it once ({human(final.stat().st_size)})"
            )
            continue
        size, sha = w.size, w.sha256
        if size is None:
            try:
                hub = download.remote(w)
            except PullError as exc:
                say(f"error: {w.path}: {exc}")
                failed += 1
                continue
            size, sha = hub.size, hub.sha256
        have = download.partial_size(final, sha)
        total += size - have
        resume = f", resuming at {human(have)}" if have else ""
        say(f"fetch {w.path} from {w.repo}@{w.revision}: {human(size - have)} of {human(size)}{resume}")
    folder = models_dir if models_dir.exists() else models_dir.parent
    free = shutil.disk_usage(folder).free if folder.exists() else 0
    say(f"would fetch {human(total)} in all; {human(free)} free in {models_dir}")
    return 1 if failed else 0


def pull(
    models_dir: Path,
    wanted: Sequence[FileSource],
    say: Say,
    *,
    progress: bool = True,
) -> tuple[list[download.Outcome], int]:
    """Fetch what is missing, file by file; a file that fails does not stop the others.
    Returns what is in place and how many failed."""
    done: list[download.Outcome] = []
    failed = 0
    for w in wanted:
        try:
            outcome = download.fetch(models_dir, w, progress=progress, announce=say)
        except PullError as exc:
            say(f"error: {exc}")
            failed += 1
            continue
        except OSError as exc:
            say(f"error: {w.path}: {exc.strerror or exc} ({exc.filename or models_dir})")
            failed += 1
            continue
        if outcome.fetched or outcome.resumed_at:
            resumed = f", resumed at {human(outcome.resumed_at)}" if outcome.resumed_at else ""
            say(
                f"pulled {w.path}: {human(outcome.fetched)} fetched{resumed}, sha256 {outcome.sha256} verified"
            )
            _unpinned(w, outcome.commit, say)
        else:
            say(f"have {w.path} (verified)")
        done.append(outcome)
    return done, failed


def locked(wanted: Sequence[FileSource], done: Sequence[download.Outcome]) -> list[FileSource]:
    """The wanted files with what a first pull learned (size and the Hub's sha256)."""
    by_path = {o.path: o for o in done}
    return [
        replace(w, size=by_path[w.path].size, sha256=by_path[w.path].sha256)
        if w.sha256 is None and w.path in by_path
        else w
        for w in wanted
    ]
