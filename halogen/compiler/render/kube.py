"""Strict kubernetes-validate on what we render, for the site's Kubernetes version."""

from __future__ import annotations

from collections.abc import Mapping

from halogen.diagnostics import Diagnostic
from halogen.yamlio import Document


def validate(files: Mapping[str, str], version: str, site: Document) -> list[Diagnostic]:
    """Problems in the manifests; one for `site`'s kubernetesVersion when there is no schema
    for it."""
    import kubernetes_validate
    from kubernetes_validate.utils import VersionNotSupportedError
    from ruamel.yaml import YAML

    yaml = YAML(typ="safe", pure=True)
    out = []
    for name, text in sorted(files.items()):
        if name.endswith("kustomization.yaml"):
            continue  # not a Kubernetes object; `kubectl kustomize` checks it in the tests
        if name.rsplit("/", 1)[-1] == "podmonitor.yaml":
            continue  # a CRD's object, unknown to kubernetes-validate: checked in the tests
            # against the CRD's schema (schemas/podmonitor.monitoring.coreos.com-v1.schema.json)
        data = yaml.load(text)
        try:
            kubernetes_validate.validate(data, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            path = ".".join(str(p) for p in exc.path)
            out.append(
                Diagnostic(
                    f"out/{name}",
                    0,
                    0,
                    path,
                    f"Kubernetes {version} rejects it: {exc.message}",
                    "fix the value in halogen.yaml it comes from",
                )
            )
        except (
            kubernetes_validate.SchemaNotFoundError,
            kubernetes_validate.InvalidSchemaError,
            VersionNotSupportedError,
        ) as exc:
            known = [v.rsplit(".", 1)[0] for v in kubernetes_validate.utils.all_versions()]  # 1.32.0 -> 1.32
            out.append(
                site.diagnostic(
                    ("deployment", "kubernetesVersion"),
                    f"no schema for Kubernetes {version}{f': {exc}' if str(exc) else ''}",
                    f"pick a version from {known[0]} to {known[-1]}",
                )
            )
            break
    return out
