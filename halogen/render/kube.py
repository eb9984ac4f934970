"""Strict kubernetes-validate on what we render, for the site's Kubernetes version."""

from __future__ import annotations

from collections.abc import Mapping

from halogen.diagnostics import Diagnostic


def validate(files: Mapping[str, str], version: str) -> list[Diagnostic]:
    import kubernetes_validate
    from ruamel.yaml import YAML

    yaml = YAML(typ="safe", pure=True)
    out = []
    for name, text in sorted(files.items()):
        if name == "kustomization.yaml":
            continue  # not a Kubernetes object; `kubectl kustomize` checks it in the tests
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
        except (kubernetes_validate.SchemaNotFoundError, kubernetes_validate.InvalidSchemaError) as exc:
            out.append(
                Diagnostic(
                    "halogen.yaml",
                    0,
                    0,
                    "deployment.kubernetesVersion",
                    f"no schema for Kubernetes {version}: {exc}",
                    "pick a version kubernetes-validate knows",
                )
            )
            break
    return out
