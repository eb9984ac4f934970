"""out/pull/: the Job that runs `halogen pull` in the image, and the ConfigMap of what it fetches.

Flux applies out/pull/ as a Kustomization of its own, which the one for out/ depends on
(docs/flux/): the Deployment's new config goes out once its files are on disk."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

from halogen import image
from halogen.compiler.render.wanted import SOURCES_FILE, dumps
from halogen.compiler.site.load import Site
from halogen.modelfiles import FileSource

FOLDER = "pull"
MANIFESTS = ("sources.yaml", "job.yaml")
SOURCES_DIR = "/etc/halogen-pull"
HASH_CHARS = 10
NAME_CHARS = 40
"""Of the deployment's name, so that name-pull-<hash> and the Job's pods' names stay within 63."""


def job_name(site: Site, digest: str) -> str:
    return f"{site.spec.deployment.name[:NAME_CHARS].rstrip('-')}-pull-{digest[:HASH_CHARS]}"


def render(site: Site, wanted: Sequence[FileSource], base: dict[str, Any], env: Any) -> dict[str, str]:
    """The files of out/pull/ by name (none when no model names a source, or pull is off).
    The name is a hash of everything else the two objects hold: a changed source, image or token
    Secret is a new Job, never an update that Kubernetes refuses."""
    d = site.spec.deployment
    if not wanted or not d.models.pull.enabled:
        return {}
    pull = d.models.pull
    # Not the Deployment's `app` label: the Service and the ReplicaSet select by it, and the
    # Job's pod must never receive the proxy's traffic.
    labels = {k: v for k, v in base["labels"].items() if k not in base["selector"]}
    context = {
        **base,
        "labels": dict(sorted({**labels, "app.kubernetes.io/component": "pull"}.items())),
        "pull": pull,
        "sources_file": SOURCES_FILE,
        "sources_dir": SOURCES_DIR,
        "sources_text": dumps(wanted).rstrip("\n"),
        "pull_command": [
            *image.ENTRYPOINT[:1],
            "pull",
            "--sources",
            f"{SOURCES_DIR}/{SOURCES_FILE}",
            "--models-dir",
            d.models.mountPath,
            "--no-progress",
        ],
        "pull_resources": {
            k: dict(sorted(v.items()))
            for k, v in (("requests", pull.resources.requests), ("limits", pull.resources.limits))
            if v
        },
        "manifests": list(MANIFESTS),
    }
    unnamed = "".join(
        env.get_template(f"pull-{n}.j2").render({**context, "pull_name": ""}) for n in MANIFESTS
    )
    name = job_name(site, hashlib.sha256(unnamed.encode("utf-8")).hexdigest())
    files = {
        f"{FOLDER}/{n}": env.get_template(f"pull-{n}.j2").render({**context, "pull_name": name})
        for n in MANIFESTS
    }
    files[f"{FOLDER}/kustomization.yaml"] = env.get_template("kustomization.yaml.j2").render(context)
    return files
