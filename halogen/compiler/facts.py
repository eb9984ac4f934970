"""The compiler's side of `halogen.lock`: which files the site's models load, and the facts the
lock knows about each model. Pure: the lock is read once by the pipeline."""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterator
from pathlib import PurePosixPath

from halogen import models_folder
from halogen.compiler import memory
from halogen.compiler.site.checks import backend_of, model_file
from halogen.compiler.site.load import Model, Site
from halogen.compiler.site.lock import LOCK_FILE
from halogen.diagnostics import Diagnostic
from halogen.llamacpp import cmdline
from halogen.llamacpp.gguf_facts import GgufFacts
from halogen.yamlio import Path_


def file_of(site: Site, model: Model) -> str | None:
    """The GGUF a model loads, relative to the models mount: its `file`, or the `-m` of a raw
    `cmd` when that names a path under the mount without macros."""
    if model.spec.cmd is None:
        path = model_file(site, model)
        return str(path) if path is not None else None
    try:
        argv = shlex.split(model.spec.cmd, comments=True)
    except ValueError:
        return None
    mount = PurePosixPath(site.spec.deployment.models.mountPath)
    # llama-server loads the last -m (or LLAMA_ARG_MODEL when no -m is given).
    value = cmdline.read(argv, server_env(site, model)).model
    if value is not None and "${" not in value:
        path = PurePosixPath(value)
        if mount in path.parents and models_folder.problem(rel := str(path.relative_to(mount))) is None:
            return rel
    return None


def used_files(site: Site) -> dict[str, list[str]]:
    """Each file the site loads -> the ids of the models that load it, sorted."""
    out: dict[str, list[str]] = {}
    for model_id in sorted(site.models):
        path = file_of(site, site.models[model_id])
        if path is not None:
            out.setdefault(path, []).append(model_id)
    return dict(sorted(out.items()))


def server_args(site: Site, model: Model) -> list[str]:
    """The llama-server flags a model runs with: its backend's, its context size, its own; or
    its raw `cmd`, split."""
    if model.spec.cmd is not None:
        try:
            return shlex.split(model.spec.cmd, comments=True)
        except ValueError:
            return []
    backend = site.spec.backends.get(backend_of(site, model) or "")
    context = ["--ctx-size", str(model.spec.contextSize)] if model.spec.contextSize else []
    return [*(backend.args if backend else []), *context, *model.spec.args]


def server_env(site: Site, model: Model) -> dict[str, str]:
    """The environment a model's llama-server starts with, as far as the site says: the pod's,
    its backend's, its own (each over the one before)."""
    backend = site.spec.backends.get(backend_of(site, model) or "") if model.spec.cmd is None else None
    return {**site.spec.deployment.env, **(backend.env if backend else {}), **model.spec.env}


def facts_of(site: Site, model: Model) -> GgufFacts | None:
    path = file_of(site, model)
    return site.lock.facts(path) if path is not None else None


def human_number(n: int) -> str:
    """A parameter count as Ollama writes it (`format.HumanNumber`, format/format.go in Ollama):
    7.6B, 32B, 134.52M, 512K."""
    if n >= 1_000_000_000:
        x = n / 1_000_000_000
        return f"{x:.0f}B" if x == int(x) else f"{x:.1f}B"
    if n >= 1_000_000:
        x = n / 1_000_000
        return f"{x:.0f}M" if x == int(x) else f"{x:.2f}M"
    if n >= 1_000:
        return f"{n / 1_000:.0f}K"
    return str(n)


_SCALE = {"": 1, "K": 1e3, "M": 1e6, "B": 1e9, "T": 1e12}
_SIZE = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*([KMBT]?)\s*$", re.IGNORECASE)
PARAMETER_TOLERANCE = 0.2
"""A hand-written parameterSize within 20% of the count is a rounding (Qwen2.5-7B has 7.6B), not a
contradiction; "7B" for a 32B file is."""


def _parameters(text: str) -> float | None:
    m = _SIZE.match(text)
    return float(m.group(1)) * _SCALE[m.group(2).upper()] if m else None


def check(site: Site) -> Iterator[Diagnostic]:
    """Hand-written metadata must agree with the lock, and contextSize fit the trained context."""
    for model_id in sorted(site.models):
        model = site.models[model_id]
        facts = facts_of(site, model)
        if facts is None:
            continue
        meta = model.spec.metadata
        where = f"the file's header ({LOCK_FILE})"
        if meta.architecture is not None and meta.architecture != facts.architecture:
            yield model.doc.diagnostic(
                ("metadata", "architecture"),
                f"architecture {meta.architecture!r} contradicts {where}: {facts.architecture!r}",
                "leave it out: halogen takes it from the lock; a display name belongs in `family`",
            )
        if meta.quantizationLevel is not None and meta.quantizationLevel.upper() != facts.fileType.upper():
            yield model.doc.diagnostic(
                ("metadata", "quantizationLevel"),
                f"quantizationLevel {meta.quantizationLevel!r} contradicts {where}: {facts.fileType!r}",
                "leave it out: halogen takes it from the lock",
            )
        if (
            meta.contextLength is not None
            and facts.contextLength
            and meta.contextLength != facts.contextLength
        ):
            yield model.doc.diagnostic(
                ("metadata", "contextLength"),
                f"contextLength {meta.contextLength} contradicts {where}: trained on {facts.contextLength}",
                "leave it out: halogen takes it from the lock",
            )
        if meta.parameterSize is not None:
            written = _parameters(meta.parameterSize)
            if (
                written is None
                or abs(written - facts.parameterCount) > PARAMETER_TOLERANCE * facts.parameterCount
            ):
                yield model.doc.diagnostic(
                    ("metadata", "parameterSize"),
                    f"parameterSize {meta.parameterSize!r} contradicts {where}: "
                    f"{human_number(facts.parameterCount)} ({facts.parameterCount} parameters)",
                    "leave it out: halogen takes it from the lock",
                )
        # A raw `cmd` sets the context with its own -c/--ctx-size.
        context = (
            model.spec.contextSize
            or memory.Flags.parse(server_args(site, model), server_env(site, model)).ctx
        )
        key: Path_ = ("contextSize",) if model.spec.cmd is None else ("cmd",)
        if context and facts.contextLength and context > facts.contextLength:
            yield model.doc.diagnostic(
                key,
                f"{'contextSize' if key == ('contextSize',) else 'the --ctx-size of cmd'} {context} is above "
                f"the {facts.contextLength} tokens {file_of(site, model)} was trained on",
                f"set it to {facts.contextLength} or less",
            )


def metadata(site: Site, model: Model) -> dict[str, object]:
    """What config.yaml's `metadata` says about a model: the hand-written values, the lock's for
    those left out, and the file's size and header keys (the runtime has only config.yaml)."""
    meta: dict[str, object] = model.spec.metadata.model_dump(exclude_none=True)
    facts = facts_of(site, model)
    path = file_of(site, model)
    if facts is not None and path is not None:
        meta.setdefault("architecture", facts.architecture)
        meta.setdefault("parameterSize", human_number(facts.parameterCount))
        meta.setdefault("quantizationLevel", facts.fileType)
        if facts.contextLength:
            meta.setdefault("contextLength", facts.contextLength)
        meta["fileSize"] = site.lock.files[path].size
        meta["memory"] = memory.estimate(facts, server_args(site, model), server_env(site, model)).total
        meta["modelInfo"] = dict(sorted(facts.info.items()))
    if model.spec.capabilities:
        meta["capabilities"] = list(model.spec.capabilities)
    return dict(sorted(meta.items()))
