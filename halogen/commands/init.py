"""`halogen init [DIR]`: a minimal site that builds as it stands, and the repository's wiring.

In DIR: halogen.yaml (one CPU backend, no group; config changes reloaded in place and checked by
the smoke Job), models.d/ with one example model commented out, and docs/flux/ (the Flux
Kustomizations that apply the committed out/ and its smoke check). At the top of the git
repository DIR lies in (DIR itself outside one): the pre-commit hooks and a GitHub Actions
workflow that check the site. Nothing is written over an existing file: when one is in the way,
nothing is written at all.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import click

from halogen.commands import sites
from halogen.commands.created import create
from halogen.commands.report import emit
from halogen.compiler.site.load import MODELS_DIR, SITE_FILE
from halogen.diagnostics import Diagnostic, Format

PROJECT = "https://github.com/halogen-project/halogen"
"""Where the pre-commit hooks and the CI's install come from (no release is on PyPI yet)."""
FLUX_FILE = "docs/flux/kustomizations.yaml"
# Not halogen.yaml: a folder holding a file of that name is a site to the hooks and to build.
WORKFLOW_FILE = ".github/workflows/halogen-check.yaml"
PRE_COMMIT_FILE = ".pre-commit-config.yaml"

SITE_TEXT = """\
# The site: halogen compiles it into out/ (`halogen build`), which Flux applies.
deployment:
  name: {name}
  namespace: default
  models:
    # The folder on the node that holds the GGUF files (`halogen pull` fills it), mounted
    # read-only into the pod at /models.
    hostPath: /var/lib/halogen/models
  resources:
    limits:
      # What the pod may use. The models' memory (weights, KV cache, buffers), known from
      # halogen.lock, is checked against it at build time.
      memory: 16Gi
  # A new config.yaml is reloaded in place: the proxy restarts only the models whose command
  # changed, and the pod rolls only when the pod itself changes (image, resources, env...).
  # `restart` rolls the pod on every config change (what a site without this key gets).
  onConfigChange: reload
  # After each change, a Job (out/smoke/) checks that the pod serves the new config, and Flux
  # reports the deployment failed when it does not (docs/flux/). `models: [id, ...]` also asks
  # those models for a short answer.
  smoke:
    enabled: true

backends:
  # How llama-server runs: written once, applied to every model that names it (or to every
  # model, while it is the only backend). --metrics: llama-server's own Prometheus series,
  # which halogen serve's /metrics carries under the model's id.
  cpu:
    args: [--n-gpu-layers, "0", --metrics]
  # A GPU (the image's llama.cpp is built for ROCm): every layer on it, flash attention, and
  # the model read into memory rather than mapped (--load-mode none: current llama.cpp no
  # longer takes --no-mmap).
  # gpu:
  #   args: [--n-gpu-layers, "999", --flash-attn, "on", --load-mode, "none", --metrics]
  #   devices: [/dev/dri, /dev/kfd]
"""

EXAMPLE_TEXT = """\
# An example model, commented out: a model is one file here, named after the id clients ask for.
# Uncomment it, or let `halogen add ORG/REPO/FILE.gguf` write one from what the Hugging Face Hub
# says of the file (its commit, its trained context); then `halogen lock --remote` and
# `halogen build`.
#
# file: Qwen/Qwen2.5-0.5B-Instruct-GGUF/qwen2.5-0.5b-instruct-q4_k_m.gguf
# source:
#   repo: Qwen/Qwen2.5-0.5B-Instruct-GGUF
#   file: qwen2.5-0.5b-instruct-q4_k_m.gguf
#   revision: main
# contextSize: 8192
"""

PRE_COMMIT_TEXT = """\
# halogen's hooks: a commit whose site is invalid, or whose out/ is not what `halogen build`
# writes, is refused (`pre-commit install` once). Pin `rev` to a tag or commit of your choice.
repos:
  - repo: {project}
    rev: main
    hooks:
      - id: halogen-validate
      - id: halogen-build-check
"""

WORKFLOW_TEXT = """\
# halogen: a pull request whose site is invalid or whose out/ is stale fails, with annotations
# on the offending lines. No release is on PyPI yet: halogen is installed from its repository,
# pinned to a commit or tag of your choice.
name: halogen
on:
  pull_request:
  push:
    branches: [main]
jobs:
  check:
    runs-on: ubuntu-latest
    steps:
      - uses: actions/checkout@v4
      - uses: actions/setup-python@v5
        with:
          python-version: "3.11"
      - run: pip install 'halogen-llamaswap[build] @ git+{project}@main'
      - run: halogen validate --format github {site}
      - run: halogen build --check --format github {site}
"""

FLUX_TEXT = """\
# Flux wiring for this site: put this file where your cluster's Flux looks (clusters/<cluster>/
# after `flux bootstrap`). It applies the committed out/ from the repository Flux already
# syncs (the GitRepository flux-system); keep {site}/ itself out of any Kustomization that
# applies a whole folder tree (halogen.yaml and models.d/ are not Kubernetes objects).
#
# 1. {name}-models applies out/pull/: the Job that runs `halogen pull` on the node, which
#    `halogen build` writes once a model names a source. `wait: true` makes it Ready only once
#    the Job has completed: its timeout must cover the largest download.
# 2. {name} applies out/ (config, Deployment, Service) once the models are in place, and
#    waits for the Deployment to be rolled out.
# 3. {name}-smoke applies out/smoke/ after it: the Job that runs `halogen smoke` until the pod
#    serves the config just applied (its sha256), with `wait: true`, so a failed check is this
#    Kustomization's failure in `flux get kustomizations` and its events. `force: true`
#    replaces the Job when the image changes (a Job's template cannot be changed); its timeout
#    must exceed deployment.smoke.timeout. docs/flux/README.md in the halogen repository says
#    what happens, in order, on a config change.
apiVersion: kustomize.toolkit.fluxcd.io/v1
kind: Kustomization
metadata:
  name: {name}-models
  namespace: flux-system
spec:
  interval: 1h
  path: ./{prefix}out/pull
  prune: true
  wait: true
  timeout: 6h
  sourceRef:
    kind: GitRepository
    name: flux-system
---
apiVersion: kustomize.toolkit.fluxcd.io/v1
kind: Kustomization
metadata:
  name: {name}
  namespace: flux-system
spec:
  dependsOn:
    - name: {name}-models
  interval: 10m
  path: ./{prefix}out
  prune: true
  wait: true
  timeout: 5m
  sourceRef:
    kind: GitRepository
    name: flux-system
---
apiVersion: kustomize.toolkit.fluxcd.io/v1
kind: Kustomization
metadata:
  name: {name}-smoke
  namespace: flux-system
spec:
  dependsOn:
    - name: {name}
  interval: 1h
  path: ./{prefix}out/smoke
  prune: true
  wait: true
  force: true
  timeout: 35m
  sourceRef:
    kind: GitRepository
    name: flux-system
"""


@dataclass(frozen=True)
class Planned:
    path: Path
    text: str


def deployment_name(folder: Path) -> str:
    """A Kubernetes name from the folder's: lower case, `-` for the rest; `llm` when none is left."""
    name = re.sub(r"[^a-z0-9-]+", "-", folder.name.lower()).strip("-")[:52].rstrip("-")
    return name or "llm"


def plan(site: Path) -> list[Planned]:
    """What init writes for a site in `site` (an absolute path), in order."""
    top = sites.repository_root(site) or site
    rel = site.relative_to(top).as_posix()
    where = "." if rel == "." else rel
    prefix = "" if rel == "." else f"{rel}/"
    name = deployment_name(site)
    return [
        Planned(site / SITE_FILE, SITE_TEXT.format(name=name)),
        Planned(site / MODELS_DIR / "example.yaml", EXAMPLE_TEXT),
        Planned(site / FLUX_FILE, FLUX_TEXT.format(name=name, prefix=prefix, site=where)),
        Planned(top / PRE_COMMIT_FILE, PRE_COMMIT_TEXT.format(project=PROJECT)),
        Planned(top / WORKFLOW_FILE, WORKFLOW_TEXT.format(project=PROJECT, site=where)),
    ]


def _shown(path: Path) -> str:
    return Path(os.path.relpath(path, Path.cwd().resolve())).as_posix()


def run(folder: Path, *, fmt: Format = "text") -> int:
    site = folder.resolve()
    if site.exists() and not site.is_dir():
        emit([Diagnostic(_shown(site), 0, 0, "", "is not a folder", "name a folder for the site")], fmt)
        return 1
    planned = plan(site)
    taken = [p.path for p in planned if p.path.exists() or p.path.is_symlink()]
    if taken:
        emit(
            [
                Diagnostic(
                    _shown(p), 0, 0, "", "exists: init never overwrites a file",
                    "move it aside and merge it back after, or run init in a new folder",
                )
                for p in taken
            ],
            fmt,
        )  # fmt: skip
        click.echo("halogen: nothing was written", err=True)
        return 1
    written: list[Path] = []
    try:
        for p in planned:
            p.path.parent.mkdir(parents=True, exist_ok=True)
            create(p.path, p.text)
            written.append(p.path)
    except OSError as exc:
        for path in written:
            path.unlink(missing_ok=True)
        click.echo(
            f"halogen: error: cannot write {exc.filename or site}: {exc.strerror or exc}; nothing was written",
            err=True,
        )
        return 1
    for path in written:
        click.echo(f"halogen: wrote {_shown(path)}", err=True)
    here = _shown(site) if site != Path.cwd().resolve() else "."
    click.echo(
        "halogen: next: "
        + (f"cd {here}; " if here != "." else "")
        + "halogen add ORG/REPO/FILE.gguf; halogen lock --remote; halogen build; "
        "then commit, and `pre-commit install` for the hooks",
        err=True,
    )
    return 0
