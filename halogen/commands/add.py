"""`halogen add ORG/REPO/FILE.gguf`: a model file written from what the Hub says of the GGUF.

The repository's revision is pinned to the commit it names now, the file's facts come from its
header (read by range, as `halogen lock --remote` reads it) and go into halogen.lock with each
file's sha256, so the build knows the model's memory before anything is downloaded.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import click

from halogen import yamlio
from halogen.commands import sites
from halogen.commands.created import create
from halogen.commands.report import emit
from halogen.compiler.site.inputs import HF_REPO, MODEL_ID
from halogen.compiler.site.load import MODELS_DIR
from halogen.compiler.site.lock import LOCK_FILE, Lock, LockedFile, read_lock, write_lock
from halogen.diagnostics import Diagnostic, Format, Invalid
from halogen.llamacpp.gguf_facts import GgufFacts
from halogen.modelfiles import SPLIT, split_parts

DEFAULT_CONTEXT = 32768
"""contextSize when the trained context is longer: the KV cache grows with it."""


@dataclass(frozen=True)
class Wanted:
    repo: str
    file: str

    @property
    def path(self) -> str:
        """Where the file goes under the models mount: as the Hub names it."""
        return f"{self.repo}/{self.file}"


def parse(spec: str) -> Wanted:
    """ORG/REPO/FILE.gguf, FILE possibly in a folder; raises click.BadParameter."""
    org, _, rest = spec.partition("/")
    name, _, file = rest.partition("/")
    repo = f"{org}/{name}"
    if (
        not re.match(HF_REPO, repo)
        or not file
        or not file.endswith(".gguf")
        or "//" in file
        or ".." in file.split("/")
    ):
        raise click.BadParameter(
            f"{spec!r} is not ORG/REPO/FILE.gguf (e.g. Qwen/Qwen2.5-Coder-7B-Instruct-GGUF/qwen2.5-coder-7b-instruct-q5_k_m.gguf)",
            param_hint="MODEL",
        )
    split = SPLIT.match(file.rsplit("/", 1)[-1])
    if split is not None and int(split["part"]) != 1:
        raise click.BadParameter(
            f"{file} is part {int(split['part'])} of a split GGUF: name the first, -00001-of-{split['count']}.gguf",
            param_hint="MODEL",
        )
    return Wanted(repo, file)


def model_id(file: str) -> str:
    """The id a file gets: its name without `.gguf` or the split suffix, lower case, with
    anything an id may not hold turned into `-`."""
    stem = file.rsplit("/", 1)[-1].removesuffix(".gguf")
    stem = re.sub(r"-\d{5}-of-\d{5}$", "", stem).lower()
    stem = re.sub(r"[^a-z0-9._-]+", "-", stem)
    stem = re.sub(r"^[^a-z0-9]+", "", stem)[:128].rstrip("-")
    return stem or "model"


def model_text(
    w: Wanted, commit: str, revision: str, facts: GgufFacts, context: int, backend: str | None = None
) -> str:
    """The model file, with what was read said in a comment."""
    from halogen.compiler.facts import human_number

    trained = f", trained on {facts.contextLength} tokens" if facts.contextLength else ""
    data: dict[str, object] = {
        "name": facts.name or model_id(w.file),
        "file": w.path,
        "source": {"repo": w.repo, "file": w.file, "revision": commit},
    }
    if backend is not None:
        data["backend"] = backend
    data["contextSize"] = context
    head = (
        f"# Written by `halogen add {w.path}`: {facts.architecture}, "
        f"{human_number(facts.parameterCount)} parameters, {facts.fileType}{trained}.\n"
        f"# source.revision is the commit {revision!r} named then; halogen.lock holds each file's sha256.\n"
    )
    return yamlio.dump(data, head)


def _backend(root: Path, backend: str | None) -> str | None:
    """The backend to name: the one asked for, which the site must have; none when the site
    has one (it applies to every model); asked for when it has several."""
    from halogen.compiler.site.load import load

    site, _ = load(root)
    known = list(site.spec.backends) if site is not None else []
    if backend is not None and known and backend not in known:
        raise click.BadParameter(
            f"the site has no backend {backend!r} (it has {', '.join(known)})", param_hint="--backend"
        )
    if backend is None and len(known) > 1:
        raise click.BadParameter(
            f"the site has backends {', '.join(known)}: name one", param_hint="--backend"
        )
    return backend


def run(
    spec: str,
    src: Path | None,
    *,
    new_id: str | None,
    revision: str,
    context: int | None,
    fmt: Format,
    backend: str | None = None,
) -> int:
    try:
        import gguf  # noqa: F401
        import huggingface_hub  # noqa: F401
    except ImportError:
        click.echo(
            "halogen: error: add needs gguf and huggingface_hub: pip install 'halogen-llamaswap[lock,pull]'",
            err=True,
        )
        return 1
    from halogen.hub import remote

    wanted = parse(spec)
    roots, missing = sites.locate([], src)
    if missing:
        emit(missing, fmt)
        return 1
    root = roots[0]
    mid = new_id or model_id(wanted.file)
    if not MODEL_ID.match(mid):
        raise click.BadParameter(
            f"{mid!r} is not a model id: letters, digits, '.', '_' or '-'", param_hint="--id"
        )
    target = root / MODELS_DIR / f"{mid}.yaml"
    if target.exists() or target.with_suffix(".yml").exists():
        emit(
            [Diagnostic(f"{MODELS_DIR}/{mid}.yaml", 0, 0, "", "exists: add never overwrites a model file",
                        "pass --id to name the new model otherwise, or delete the file first")],
            fmt,
        )  # fmt: skip
        return 1
    backend = _backend(root, backend)
    try:
        old = read_lock(root / LOCK_FILE)
    except Invalid as exc:
        emit(exc.diagnostics, fmt)
        return 1
    files = split_parts(wanted.file)
    try:
        listed = remote.listing(wanted.repo, revision)
        hub = [listed.entry(f) for f in files]
        facts, fetched = remote.facts(
            [
                remote.Part(wanted.repo, f, listed.commit, size)
                for f, (size, _) in zip(files, hub, strict=True)
            ]
        )
    except remote.RemoteError as exc:
        click.echo(f"halogen: error: {exc}" + (f" ({exc.hint})" if exc.hint else ""), err=True)
        return 1
    if context is not None and facts.contextLength and context > facts.contextLength:
        raise click.BadParameter(
            f"{context} is above the {facts.contextLength} tokens {wanted.file} was trained on",
            param_hint="--context-size",
        )
    size = context or min(facts.contextLength or DEFAULT_CONTEXT, DEFAULT_CONTEXT)
    target.parent.mkdir(exist_ok=True)
    try:
        create(target, model_text(wanted, listed.commit, revision, facts, size, backend))
    except FileExistsError:
        click.echo(
            f"halogen: error: {MODELS_DIR}/{mid}.yaml appeared meanwhile: nothing was written", err=True
        )
        return 1
    entries = dict(old.files)
    first = f"{wanted.repo}/{files[0]}"
    for f, (bytes_, sha) in zip(files, hub, strict=True):
        path = f"{wanted.repo}/{f}"
        entries[path] = LockedFile(bytes_, sha, facts if path == first else None)
    write_lock(root / LOCK_FILE, Lock(dict(sorted(entries.items()))))
    from halogen.hub.download import human

    total = sum(b for b, _ in hub)
    click.echo(
        f"halogen: wrote {MODELS_DIR}/{mid}.yaml ({facts.architecture}, {facts.fileType}, {human(total)}, "
        f"contextSize {size} of {facts.contextLength}) and its {LOCK_FILE} entry; read {human(fetched)} from the Hub",
        err=True,
    )
    return 0
