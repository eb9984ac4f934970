"""The compiler's side of `halogen.lock`: which files the site's models load, and the facts the
lock knows about each model. Pure: the lock is read once by the pipeline."""

from __future__ import annotations

import itertools
import shlex
from pathlib import PurePosixPath

from halogen.spec.checks import model_file
from halogen.spec.load import Model, Site


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
    for flag, value in itertools.pairwise(argv):
        if flag in ("-m", "--model") and "${" not in value:
            path = PurePosixPath(value)
            if mount in path.parents and ".." not in path.parts:
                return str(path.relative_to(mount))
    return None


def used_files(site: Site) -> dict[str, list[str]]:
    """Each file the site loads -> the ids of the models that load it, sorted."""
    out: dict[str, list[str]] = {}
    for model_id in sorted(site.models):
        path = file_of(site, site.models[model_id])
        if path is not None:
            out.setdefault(path, []).append(model_id)
    return dict(sorted(out.items()))
