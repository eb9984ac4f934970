"""`halogen lock --remote`: the lock of a site's sourced models, from the Hub instead of the node.

Each model with a source gets, per file (every part of a split GGUF), the size and sha256 the
Hub's LFS metadata gives, and the first part the facts its header states, read by range. So the
memory estimates and the fitted routing are known before a byte of weights is downloaded, and a
later `halogen pull` verifies the download against the same sha256. A file the lock already
holds at the Hub's sha256 is not read again. Files without a source (placed on the node by hand)
keep what the lock says of them: `halogen lock` on the node reads those.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from halogen.compiler.facts import used_files
from halogen.compiler.site.load import Model, load
from halogen.compiler.site.lock import LOCK_FILE, Lock, LockedFile
from halogen.compiler.site.sources import sources
from halogen.diagnostics import Diagnostic, Invalid
from halogen.hub import remote
from halogen.modelfiles import FileSource


@dataclass(frozen=True)
class Read:
    """What one model's lookup cost: the bytes of its header(s) fetched (0: the lock had it)."""

    model: str
    path: str
    fetched: int
    size: int


def _where(model: Model) -> tuple[str, ...]:
    return ("source",) if model.spec.source is not None else ("file",)


def entries(
    parts: list[FileSource], old: Lock, listings: dict[tuple[str, str], remote.Listing]
) -> tuple[dict[str, LockedFile], int]:
    """The lock's entries for one model's files, and the bytes fetched for them."""
    first = parts[0]
    key = (first.repo, first.revision)
    if key not in listings:
        listings[key] = remote.listing(first.repo, first.revision)
    listed = listings[key]
    hub = [listed.entry(p.file) for p in parts]
    known = [old.files.get(p.path) for p in parts]
    if all(k is not None and (k.size, k.sha256) == h for k, h in zip(known, hub, strict=True)) and (
        known[0] is not None and known[0].gguf is not None
    ):
        return {p.path: k for p, k in zip(parts, known, strict=True) if k is not None}, 0
    found, fetched = remote.facts(
        [remote.Part(p.repo, p.file, listed.commit, size) for p, (size, _) in zip(parts, hub, strict=True)]
    )
    out = {parts[0].path: LockedFile(hub[0][0], hub[0][1], found)}
    out.update({p.path: LockedFile(size, sha) for p, (size, sha) in zip(parts[1:], hub[1:], strict=True)})
    return out, fetched


def scan(root: Path) -> tuple[Lock, list[Diagnostic], list[Read]]:
    """The lock the Hub gives now, the problems met on the way, and what each model cost."""
    site, found = load(root)
    found = [d for d in found if d.file != LOCK_FILE]  # the lock being rewritten may be broken
    if site is None:
        raise Invalid(found)
    files, problems = sources(site)
    found += problems
    by_model: dict[str, list[FileSource]] = {}
    for f in files:  # sorted by path: a split GGUF's parts in order
        by_model.setdefault(f.models[0], []).append(f)
    listings: dict[tuple[str, str], remote.Listing] = {}
    result: dict[str, LockedFile] = {}
    reads: list[Read] = []
    for model_id, parts in sorted(by_model.items()):
        model = site.models[model_id]
        try:
            got, fetched = entries(parts, site.lock, listings)
        except remote.RemoteError as exc:
            found.append(model.doc.diagnostic(_where(model), str(exc), exc.hint))
            continue
        result.update(got)
        reads.append(Read(model_id, parts[0].path, fetched, sum(e.size for e in got.values())))
    sourced = {f.path for f in files}
    for path, ids in used_files(site).items():
        if path in sourced or path in result:
            continue
        if path in site.lock.files:
            result[path] = site.lock.files[path]
            continue
        model = site.models[ids[0]]
        found.append(
            model.doc.diagnostic(
                ("cmd",) if model.spec.cmd else ("file",),
                f"{path} has no source on the Hub and is not in {LOCK_FILE}",
                "run `halogen lock` where the file is, or give the model a source",
                severity="warning",
            )
        )
    return Lock(dict(sorted(result.items()))), found, reads
