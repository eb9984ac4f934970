"""Read the Kubernetes manifests a llama-swap deployment ran from: the Deployment's name,
namespace, port, resources and grace period, its hostPath model folders, and the Service's
type and address. What halogen renders otherwise is noted, the seed's bugs as fixed."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from halogen import yamlio
from halogen.diagnostics import Diagnostic, Invalid
from halogen.importing.notes import Note
from halogen.yamlio import MAX_BYTES

METALLB_ADDRESS = "metallb.universe.tf/loadBalancerIPs"
SEPARATOR = re.compile(r"^---[ \t]*(#.*)?$", re.MULTILINE)
MAX_FILES = 200


@dataclass
class Manifests:
    deployment: dict[str, Any] = field(default_factory=dict)  # halogen.yaml's `deployment`, in part
    mounts: dict[str, str] = field(default_factory=dict)  # mountPath -> hostPath, model folders
    notes: list[Note] = field(default_factory=list)


def _documents(folder: Path) -> list[tuple[str, dict[str, Any]]]:
    """Every object in the folder's YAML files, with the file it came from."""
    if not folder.is_dir():
        raise Invalid(
            [
                Diagnostic(
                    str(folder), 0, 0, "", "not a folder", "--manifests names the folder of the manifests"
                )
            ]
        )
    files = sorted(p for p in folder.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file())
    if len(files) > MAX_FILES:
        raise Invalid(
            [Diagnostic(str(folder), 0, 0, "", f"{len(files)} YAML files, over the limit of {MAX_FILES}")]
        )
    out = []
    for path in files:
        size = path.stat().st_size
        if size > MAX_BYTES:  # checked before reading: a manifest folder may hold anything
            raise Invalid(
                [Diagnostic(path.name, 0, 0, "", f"file is {size} bytes, over the {MAX_BYTES} byte limit")]
            )
        with path.open("rb") as fh:
            raw = fh.read(MAX_BYTES + 1)
        # One document at a time through the project's reader (its node and alias budget),
        # each padded to its own lines so that positions stay the file's.
        text = raw.decode("utf-8", "replace")
        starts = [0, *(m.end() for m in SEPARATOR.finditer(text))]
        ends = [m.start() for m in SEPARATOR.finditer(text)] + [len(text)]
        docs = []
        for start, end in zip(starts, ends, strict=True):
            padding = "\n" * text.count("\n", 0, start)
            docs.append(yamlio.load((padding + text[start:end]).encode(), path.name).data)
        out += [(path.name, d) for d in docs if isinstance(d, dict)]
    return out


def _get(data: Any, *path: str | int) -> Any:
    for part in path:
        if isinstance(part, int):
            data = data[part] if isinstance(data, list) and len(data) > part else None
        else:
            data = data.get(part) if isinstance(data, dict) else None
    return data


def read(folder: Path) -> Manifests:
    found = Manifests()
    docs = _documents(folder)
    deployments = [(name, d) for name, d in docs if d.get("kind") == "Deployment"]
    services = [(name, d) for name, d in docs if d.get("kind") == "Service"]
    maps = [(name, d) for name, d in docs if d.get("kind") == "ConfigMap"]
    if deployments:
        _deployment(*deployments[0], found)
        for name, d in deployments[1:]:
            found.notes.append(
                Note(
                    "not carried",
                    name,
                    f"Deployment {_get(d, 'metadata', 'name')!r}: one site is one Deployment",
                )
            )
    else:
        found.notes.append(
            Note(
                "not carried", str(folder), "no Deployment found: the site's deployment is halogen's default"
            )
        )
    if services:
        _service(*services[0], found)
    for name, cm in maps:
        annotations = _get(cm, "metadata", "annotations") or {}
        if (
            "config.yaml" in (_get(cm, "data") or {})
            and "kustomize.toolkit.fluxcd.io/substitute" not in annotations
        ):
            found.notes.append(
                Note(
                    "fixed",
                    name,
                    "the ConfigMap was open to Flux's variable substitution, which blanks ${PORT} and every "
                    "macro: halogen's ConfigMap is annotated kustomize.toolkit.fluxcd.io/substitute: disabled",
                )
            )
    return found


def _deployment(name: str, d: dict[str, Any], found: Manifests) -> None:
    out = found.deployment
    notes = found.notes
    meta = _get(d, "metadata") or {}
    if isinstance(meta.get("name"), str):
        out["name"] = meta["name"]
    if isinstance(meta.get("namespace"), str):
        out["namespace"] = meta["namespace"]
    if "config-version" in (meta.get("annotations") or {}):
        notes.append(
            Note(
                "fixed",
                name,
                "the config-version annotation sat on the Deployment, where a change rolls nothing out: "
                "halogen puts the config's hash on the pod template, so every config change restarts the pod",
            )
        )
    pod = _get(d, "spec", "template", "spec") or {}
    grace = pod.get("terminationGracePeriodSeconds")
    if isinstance(grace, int) and grace > 0:
        out["terminationGracePeriodSeconds"] = grace
    container = _get(pod, "containers", 0) or {}
    image = container.get("image")
    if isinstance(image, str):
        _image(name, image, found)
    port = _get(container, "ports", 0, "containerPort")
    if isinstance(port, int):
        out["port"] = port
    resources = container.get("resources")
    if isinstance(resources, dict):
        kept = {
            k: dict(v) for k, v in resources.items() if k in ("requests", "limits") and isinstance(v, dict)
        }
        if kept:
            out["resources"] = kept
    if _get(container, "securityContext", "privileged") is True:
        notes.append(
            Note(
                "fixed",
                name,
                "the container ran privileged: halogen's pod is not privileged, runs as non-root, and mounts "
                "a GPU's devices only for a backend that names them",
            )
        )
    for var in container.get("env") or []:
        if isinstance(var, dict) and "name" in var:
            notes.append(
                Note(
                    "not carried",
                    name,
                    f"container variable {var['name']} belonged to the old image: add it to deployment.env "
                    "if halogen's image needs it",
                )
            )
    volumes = {v.get("name"): v for v in pod.get("volumes") or [] if isinstance(v, dict)}
    for mount in container.get("volumeMounts") or []:
        if not isinstance(mount, dict):
            continue
        volume = volumes.get(mount.get("name")) or {}
        host = _get(volume, "hostPath", "path")
        target = mount.get("mountPath")
        if mount.get("subPath") and "configMap" in volume:
            notes.append(
                Note(
                    "fixed",
                    name,
                    f"the config was mounted with subPath ({target}), which the kubelet never updates: "
                    "halogen mounts the ConfigMap as a folder and reloads on change",
                )
            )
        if not isinstance(host, str) or not isinstance(target, str):
            continue
        if PurePosixPath(host).is_relative_to("/dev"):
            notes.append(
                Note(
                    "not carried",
                    name,
                    f"device {host} was mounted for every model: name it under `devices:` of the backend "
                    "that uses the GPU (with supplementalGroups), and only that backend's pod gets it",
                )
            )
        else:
            found.mounts[target] = host
    strategy = _get(d, "spec", "strategy", "type")
    if strategy == "Recreate":
        out["strategy"] = "Recreate"


def _image(name: str, image: str, found: Manifests) -> None:
    """A pod that already ran halogen keeps its image (pinned); any other image, llama-swap's,
    cannot run `halogen serve`, so the site gets halogen's and the note says so."""
    reference, _, digest = image.partition("@")
    repository, tag = reference, ""
    if ":" in reference.rsplit("/", 1)[-1]:  # a registry's port is no tag
        repository, _, tag = reference.rpartition(":")
    latest = not digest and tag in ("", "latest")
    if "halogen" in repository.rsplit("/", 1)[-1]:
        carried: dict[str, str] = {"repository": repository}
        if digest:
            carried["digest"] = digest
        elif not latest:
            carried["tag"] = tag
        found.deployment["image"] = carried
        if latest:
            found.notes.append(
                Note("fixed", name, f"{image} was unpinned (:latest): the site pins halogen's own version")
            )
        return
    found.notes.append(
        Note(
            "changed",
            name,
            f"the pod ran {image}; the site runs halogen's image (halogen serve with llama-server): "
            "set deployment.image to your own build of it"
            + ("; the old image was unpinned (:latest), halogen's is pinned" if latest else ""),
        )
    )


def _service(name: str, s: dict[str, Any], found: Manifests) -> None:
    spec = s.get("spec") or {}
    service: dict[str, Any] = {}
    if spec.get("type") in ("ClusterIP", "NodePort", "LoadBalancer"):
        service["type"] = spec["type"]
    annotations = dict(_get(s, "metadata", "annotations") or {})
    address = annotations.pop(METALLB_ADDRESS, None) or spec.get("loadBalancerIP")
    if isinstance(address, str) and "," not in address:
        service["address"] = address
    if annotations:
        service["annotations"] = {str(k): str(v) for k, v in annotations.items()}
    if spec.get("externalTrafficPolicy") in ("Cluster", "Local"):
        service["externalTrafficPolicy"] = spec["externalTrafficPolicy"]
    if service:
        found.deployment["service"] = service
