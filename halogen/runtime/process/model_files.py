"""The model files a command loads, as the runtime sees them on disk.

A model added in Git can reach the pod before the pull Job has put its file on the node. Without
this, llama-server would start, fail to open the file and exit, and the request would get a 502
with its last words; here it gets a 503 with Retry-After that names the file, and no process is
started (nor another model stopped to make room). Ollama's /api/pull, which halogen cannot honour
at run time (the models folder is read-only; the cluster's pull Job is its only writer), answers
with what is on disk in Ollama's progress shape (server/routes.go, PullHandler and waitForStream).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from halogen.hub.files import verified
from halogen.llamacpp import cmdline
from halogen.llamaswap.resolved import Runnable
from halogen.modelfiles import split_parts
from halogen.runtime.base.errors import StartFailed

RETRY_AFTER = 30
"""Seconds: a download takes minutes; a client that retries sooner only adds load."""
FETCHED_BY = (
    "halogen does not download at run time: the cluster fetches models from the site "
    "(the pull Job in out/pull/, from each model's source) and this model is served once its file is there"
)


class FileMissing(StartFailed):
    """The model's file is not on disk (yet): nothing was started."""

    status = 503
    kind = "server_error"
    code = "model_file_missing"

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(RETRY_AFTER)}


@dataclass(frozen=True)
class OnDisk:
    path: str
    size: int | None
    """None when the file is not there."""
    sha256: str | None
    """What `halogen pull` verified, while the file is unchanged since; None otherwise."""


def files(runnable: Runnable) -> list[str]:
    """The files the command loads: its model (the last `-m`, else `LLAMA_ARG_MODEL`), with every
    part when it names a split GGUF."""
    first = cmdline.of_command(runnable.argv, runnable.env).model
    if first is None:
        return []
    folder, _, name = first.rpartition("/")
    return [f"{folder}/{part}" if folder else part for part in split_parts(name)]


def on_disk(runnable: Runnable) -> Iterator[OnDisk]:
    for path in files(runnable):
        try:
            size: int | None = os.stat(path).st_size
        except OSError:
            size = None
        yield OnDisk(path, size, verified(Path(path)) if size is not None else None)


def require(runnable: Runnable) -> None:
    """Refuse, before anything starts, a model whose files are not all on disk."""
    missing = [f.path for f in on_disk(runnable) if f.size is None]
    if missing:
        raise FileMissing(
            f"model {runnable.id!r} is not available yet: {', '.join(missing)} is not on disk; "
            + how_to_get(runnable, missing)
        )


def how_to_get(runnable: Runnable, missing: list[str]) -> str:
    """What puts the files there: `halogen pull` (or the pull Job) for a model with a source,
    a copy for one without."""
    where = ", ".join(missing)
    if runnable.source:
        return (
            f"it comes from {runnable.source}: run `halogen pull {runnable.id}` in the site "
            "(on the cluster, the pull Job in out/pull/ fetches it)"
        )
    if runnable.source == "":
        return f"the site gives this model no `source`, so nothing fetches it: copy the file to {where}"
    return (
        f"{FETCHED_BY}. A model without a `source` is fetched by no one: copy its file to {where} "
        "(on the node, under deployment.models.hostPath)"
    )


def pull_progress(runnable: Runnable) -> list[dict[str, Any]]:
    """Ollama's pull progress for a model the config declares: `success` when every file is on
    disk and verified by `halogen pull`; otherwise it ends in an error that says why."""
    events: list[dict[str, Any]] = [{"status": "pulling manifest"}]
    found = list(on_disk(runnable))
    if not found:
        return [*events, {"error": f"model {runnable.id!r} names no model file (-m) in its command"}]
    for f in found:
        if f.size is None:
            return [*events, {"error": f"{f.path} is not on disk; {how_to_get(runnable, [f.path])}"}]
        if f.sha256 is None:
            return [
                *events,
                {
                    "error": f"{f.path} is on disk but not verified by `halogen pull` (or changed since); "
                    "the cluster fetches and verifies models from the site: run the pull Job again"
                },
            ]
        events.append(
            {
                "status": f"pulling {f.sha256[:12]}",
                "digest": f"sha256:{f.sha256}",
                "total": f.size,
                "completed": f.size,
            }
        )
    return [
        *events,
        {"status": "verifying sha256 digest"},
        {"status": "writing manifest"},
        {"status": "success"},
    ]
