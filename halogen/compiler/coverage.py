"""Which models the memory check covers: a warning for each model halogen.lock does not know,
with a did-you-mean against the locked files, and the one notice for a site without a lock.

A model the lock does not know has no estimate. The budget checks leave it out, and fitted
routing puts it in no matrix set, which llama-swap reads as "runs alone": loading it stops every
other model, and loading another stops it (fit.py). So it never breaks the budget beside another
model, but it may not fit on its own: that is what "memory not checked" means. Pure.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator

from halogen.compiler import facts
from halogen.compiler.site.load import Site
from halogen.compiler.site.lock import LOCK_FILE
from halogen.diagnostics import Diagnostic


def fitted(site: Site) -> bool:
    """Whether routing is left to the budget: a memoryBudget, and no groups or matrix."""
    return site.spec.memoryBudget is not None and not site.spec.groups and site.spec.matrix is None


def effect(site: Site) -> str:
    """What an unknown model's place in the routing is, in words."""
    if fitted(site):
        return "the fitted matrix puts it in no set, so it runs alone: loading it stops every other model"
    return "the budget checks leave it out"


def unlocked(site: Site) -> list[str]:
    """The models whose memory is not known: their file is not in the lock, or halogen cannot
    tell which file a raw `cmd` loads."""
    return [m for m in sorted(site.models) if facts.facts_of(site, site.models[m]) is None]


def check(site: Site) -> Iterator[Diagnostic]:
    """With a lock, a warning per model it does not know. Without one, nothing here: `notice`
    says it once for the site."""
    if not site.lock.written:
        return
    for model_id in unlocked(site):
        model = site.models[model_id]
        path = facts.file_of(site, model)
        where = ("cmd",) if model.spec.cmd is not None else ("file",)
        if path is None:
            yield model.doc.diagnostic(
                where,
                f"memory not checked: halogen cannot tell which file this cmd loads; {effect(site)}",
                "name the file with -m <models mount>/<path>, without macros, and run `halogen lock`",
                severity="warning",
            )
            continue
        if path in site.lock.missing:
            hint = "it was missing where `halogen lock` last ran: run it again where the file is, or `halogen pull` it"
        elif close := difflib.get_close_matches(path, list(site.lock.files), n=1, cutoff=0.8):
            hint = f"did you mean {close[0]}? That one is locked"
        else:
            hint = f"run `halogen lock` where the file is, and commit {LOCK_FILE}"
        yield model.doc.diagnostic(
            where,
            f"{path} is not in {LOCK_FILE}: memory not checked; {effect(site)}",
            hint,
            severity="warning",
        )


def notice(site: Site) -> str | None:
    """The one line a site without a lock gets: its memory was not checked at all."""
    if site.lock.written or not facts.used_files(site):
        return None
    ran = "each model runs alone, as no fit was made" if fitted(site) else "no budget check was made"
    return (
        f"warning: no {LOCK_FILE}, so the models' memory was not checked ({ran}): run `halogen lock` "
        f"where the model files are, or `halogen pull` them, and commit {LOCK_FILE}"
    )
