"""From a llama-swap config to a written site: translate, build the draft until it builds
(leaving out, and naming, whatever the build refuses), compare, then write it whole."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from halogen import yamlio
from halogen.compiler import pipeline
from halogen.compiler.site.load import MODELS_DIR, SITE_FILE
from halogen.diagnostics import Diagnostic, Invalid, errors
from halogen.importing import compare, kube, source, translate
from halogen.importing.notes import REPORT_FILE, Note, report

MAX_ROUNDS = 50
# A model file's keys in the order the shipped site writes them.
ORDER = (
    "name",
    "description",
    "file",
    "cmd",
    "cmdStop",
    "backend",
    "group",
    "priority",
    "contextSize",
    "args",
    "env",
    "aliases",
    "capabilities",
    "metadata",
    "ttl",
    "unlisted",
    "useModelName",
    "concurrencyLimit",
    "sendLoadingState",
    "checkEndpoint",
    "filters",
    "variants",
    "llamaSwap",
)
# halogen.yaml sections whose entries the import may leave out one by one.
SECTIONS = ("selectors", "profiles", "peers", "groups")


class NotImported(Invalid):
    """The site does not build even with every refused part left out; `notes` says what was."""

    def __init__(self, diagnostics: list[Diagnostic], notes: list[Note]) -> None:
        super().__init__(diagnostics)
        self.notes = notes


@dataclass(frozen=True)
class Imported:
    files: dict[str, str]  # path in the site -> text
    notes: list[Note]
    compared: list[str]
    unexpected: list[compare.Difference]


def _files(draft: translate.Draft, name: str) -> dict[str, str]:
    files = {
        SITE_FILE: yamlio.dump(
            draft.site,
            header=f"# Imported from {name} by `halogen import`: see {REPORT_FILE} for what changed.\n",
        )
    }
    for mid, entry in sorted(draft.models.items()):
        ordered = dict(sorted(entry.items(), key=lambda item: ORDER.index(item[0])))
        files[f"{MODELS_DIR}/{mid}.yaml"] = yamlio.dump(
            ordered, header=f"# Imported from {draft.origin.get(mid, name)}.\n"
        )
    return files


def _staged_build(files: Mapping[str, str]) -> tuple[list[Diagnostic], Any]:
    """Build the draft in a scratch folder: its diagnostics, and its config when it builds."""
    with tempfile.TemporaryDirectory(prefix="halogen-import-") as scratch:
        root = Path(scratch)
        (root / MODELS_DIR).mkdir()
        for path, text in files.items():
            (root / path).write_text(text, encoding="utf-8")
        try:
            pipeline.build(root)
            return [], pipeline.compile_config(root).config
        except Invalid as exc:
            return list(exc.diagnostics), None


def _prune(draft: translate.Draft, problems: list[Diagnostic]) -> bool:
    """Leave out what each error is about, noting why; False when an error is about the site
    as a whole (then the import fails with it)."""
    dropped = False
    keys = {section: list(draft.site.get(section, {})) for section in SECTIONS}
    for d in errors(problems):
        message = f"{d.field + ': ' if d.field else ''}{d.message}" + (f" ({d.hint})" if d.hint else "")
        if d.file.startswith(f"{MODELS_DIR}/"):
            mid = d.file[len(MODELS_DIR) + 1 :].rsplit(".", 1)[0]
            if draft.models.pop(mid, None) is not None:
                draft.notes.append(
                    Note("refused", draft.origin.get(mid, ""), f"model {mid!r} is left out: {message}")
                )
            dropped = True
            continue
        if d.file != SITE_FILE:
            return False
        where = next(
            (
                (section, key)
                for section in SECTIONS
                for key in keys[section]
                if d.field == f"{section}.{key}"
                or d.field.startswith((f"{section}.{key}.", f"{section}.{key}["))
            ),
            None,
        )
        if where is not None:
            section, key = where
            if draft.site.get(section, {}).pop(key, None) is not None:
                if not draft.site[section]:
                    del draft.site[section]
                for entry in draft.models.values():
                    if section == "groups" and entry.get("group") == key:
                        del entry["group"]
            draft.notes.append(Note("refused", f"{SITE_FILE} {section}.{key}", f"left out: {message}"))
        elif d.field.startswith("matrix"):
            draft.site.pop("matrix", None)
            draft.notes.append(Note("refused", f"{SITE_FILE} matrix", f"the matrix is left out: {message}"))
        elif d.field.startswith("llamaSwap.preload"):
            draft.site.get("llamaSwap", {}).pop("preload", None)
            draft.notes.append(
                Note("refused", f"{SITE_FILE} llamaSwap.preload", f"preload is left out: {message}")
            )
        else:
            return False
        dropped = True
    return dropped


def import_site(config_path: Path, manifests: Path | None) -> Imported:
    """Everything `halogen import` writes, as text; raises `Invalid` for input it cannot read
    and for a site that does not build once every refused part is left out."""
    config, ran, doc, notes, raw = source.read(config_path)
    found = kube.read(manifests) if manifests is not None else None
    draft = translate.translate(config, doc, found, config_path.stem)
    draft.notes[:0] = notes
    for key, value in raw.items():
        draft.raw.setdefault(key, value)
    name = config_path.name
    for _ in range(MAX_ROUNDS):
        if not draft.models:
            raise NotImported(
                [Diagnostic(name, 0, 0, "models", "no model could be imported", "see the notes above")],
                draft.notes,
            )
        files = _files(draft, name)
        problems, compiled = _staged_build(files)
        if compiled is not None:
            break
        if not _prune(draft, problems):
            raise NotImported(problems, draft.notes)
    else:
        raise NotImported([Diagnostic(name, 0, 0, "", "the imported site does not build")], draft.notes)
    if ran.globalTTL != config.globalTTL:
        for mid, model in config.models.items():
            if model.ttl is None or model.ttl == -1:
                draft.intended.setdefault(mid, {})["ttl"] = (
                    "the top-level `ttl` llama-swap ignored is globalTTL now"
                )
    lines, found_differences = compare.compare(ran, compiled, draft.intended)
    unexpected = [d for d in found_differences if not d.why]
    files[REPORT_FILE] = report(name, draft.notes, draft.raw, lines)
    return Imported(files, draft.notes, lines, unexpected)


def refused(target: Path) -> Diagnostic | None:
    """Why the site cannot be written at `target`: it already holds a site, or files in the way."""
    for name in (SITE_FILE, MODELS_DIR, REPORT_FILE):
        if (target / name).exists() or (target / name).is_symlink():
            return Diagnostic(
                str(target / name),
                0,
                0,
                "",
                "already exists: halogen import never overwrites a site",
                "import into a new folder: halogen import CONFIG DIR",
            )
    if target.exists() and not target.is_dir():
        return Diagnostic(str(target), 0, 0, "", "is not a folder", "name a new or existing folder")
    return None


def write(target: Path, files: Mapping[str, str]) -> None:
    """Write the site whole or not at all: staged beside it, fsynced, then renamed in; into an
    existing folder, models.d/ and the report go first and halogen.yaml (what makes it a site)
    last, each by rename, and a failure takes back what was moved."""
    problem = refused(target)
    if problem is not None:
        raise Invalid([problem])
    parent = target.parent if not target.is_dir() else target
    parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".halogen-import-", dir=parent))
    moved: list[Path] = []
    try:
        (staging / MODELS_DIR).mkdir()
        for path, text in files.items():
            with (staging / path).open("w", encoding="utf-8") as fh:
                fh.write(text)
                fh.flush()
                os.fsync(fh.fileno())
        if not target.exists():
            staging.chmod(0o755)
            os.rename(staging, target)
            return
        for name in (MODELS_DIR, REPORT_FILE, SITE_FILE):
            if (target / name).exists() or (target / name).is_symlink():
                raise Invalid(
                    [refused(target) or Diagnostic(str(target / name), 0, 0, "", "appeared meanwhile")]
                )
            os.rename(staging / name, target / name)
            moved.append(target / name)
    except BaseException:
        for done in reversed(moved):
            shutil.rmtree(done) if done.is_dir() else done.unlink()
        raise
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
