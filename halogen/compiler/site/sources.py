"""Where each model's files come from: the model file's `source`, or its `file` path read as
`<org>/<repo>/<file>` on the Hugging Face Hub, which a warning then spells out (the path's shape
alone made a download and a pull Job). `source: null` says the file is placed by hand. A split
GGUF is one model with all its parts."""

from __future__ import annotations

from collections.abc import Iterator

from halogen.compiler.site.checks import model_file
from halogen.compiler.site.load import Model, Site
from halogen.diagnostics import Diagnostic
from halogen.modelfiles import SPLIT, FileSource, split_parts

DEFAULT_REVISION = "main"


def _written_null(model: Model) -> bool:
    """`source: null` written out: the file is placed by hand, whatever its path reads as."""
    data = model.doc.data
    return isinstance(data, dict) and "source" in data and data["source"] is None


def _model_sources(site: Site, model: Model) -> tuple[list[FileSource], list[Diagnostic]]:
    spec = model.spec
    path = model_file(site, model)
    if path is None:  # a raw `cmd`, or a path the mount checks already refuse
        return [], []
    source = spec.source
    parts = path.parts
    derivable = len(parts) >= 3
    if source is None and (not derivable or _written_null(model)):
        return [], []  # placed on the node by hand: nothing to fetch
    notices = []
    if source is None:  # said nowhere but in the path's shape: say what it becomes
        repo, name = "/".join(parts[:2]), "/".join(parts[2:])
        notices.append(
            model.doc.diagnostic(
                ("file",),
                f"read as {name} in the Hugging Face repository {repo}: `halogen pull` and the pull Job fetch it from there",
                f"write `source: {{repo: {repo}}}` to say so, or `source: null` for a file placed on the node by hand",
                severity="warning",
            )
        )
    where = ("source",) if source is not None else ("file",)
    if source is not None and (source.repo is None or source.file is None) and not derivable:
        missing = "repo" if source.repo is None else "file"
        return [], [
            model.doc.diagnostic(
                ("source",),
                f"source.{missing} is not given and `file` ({path}) does not read <org>/<repo>/<file>",
                f"name source.{missing}, or put the GGUF under <org>/<repo>/ in the models folder",
            )
        ]
    repo = (source.repo if source and source.repo else None) or "/".join(parts[:2])
    repo_file = (source.file if source and source.file else None) or "/".join(parts[2:])
    revision = source.revision if source else DEFAULT_REVISION
    local_split, remote_split = SPLIT.match(path.name), SPLIT.match(repo_file.rsplit("/", 1)[-1])
    problems = []
    for match, label in ((local_split, "file"), (remote_split, "source.file")):
        if match is not None and (int(match["part"]) != 1 or int(match["count"]) < 1):
            problems.append(
                model.doc.diagnostic(
                    where,
                    f"{label} names part {match['part']} of a split GGUF",
                    "name the first part, -00001-of-...: llama-server loads the rest from it, and pull fetches them all",
                )
            )
    if problems:
        return [], problems
    if (local_split is None) != (remote_split is None) or (
        local_split and remote_split and local_split["count"] != remote_split["count"]
    ):
        return [], [
            model.doc.diagnostic(
                where,
                "file and source.file disagree on the split: one is a split GGUF, the other not, or their part counts differ",
                "give both the same -0000K-of-0000N.gguf form",
            )
        ]
    local_parts = split_parts(str(path))
    remote_parts = split_parts(repo_file)
    return [
        FileSource(local, repo, remote, revision, (model.id,))
        for local, remote in zip(local_parts, remote_parts, strict=True)
    ], notices


def sources(site: Site) -> tuple[list[FileSource], list[Diagnostic]]:
    """Every file the site's models fetch, by path; problems where the model file wrote them.
    Two models may share a file when they name the same source for it."""
    found: list[Diagnostic] = []
    by_path: dict[str, FileSource] = {}
    for model_id in sorted(site.models):
        model = site.models[model_id]
        files, problems = _model_sources(site, model)
        found += problems
        for f in files:
            other = by_path.get(f.path)
            if other is None:
                by_path[f.path] = f
            elif (other.repo, other.file, other.revision) != (f.repo, f.file, f.revision):
                found.append(
                    model.doc.diagnostic(
                        ("source",) if model.spec.source else ("file",),
                        f"{f.path} comes from {f.repo}/{f.file}@{f.revision} here but from "
                        f"{other.repo}/{other.file}@{other.revision} in {other.models[0]}",
                        "one file on disk has one source: give both models the same one",
                    )
                )
    return sorted(by_path.values()), found


def problems(site: Site) -> Iterator[Diagnostic]:
    yield from sources(site)[1]
