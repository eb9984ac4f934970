"""out/smoke/: the Job that runs `halogen smoke` in the image against the Service, once Flux has
applied out/, and fails when the pod does not come to serve this config.

Flux applies out/smoke/ as a Kustomization of its own that depends on the one for out/ and
waits for the Job (docs/flux/): a failed check is a failed deployment in Flux's status."""

from __future__ import annotations

from typing import Any

from halogen import image
from halogen.compiler.render.pull import HASH_CHARS, NAME_CHARS
from halogen.compiler.site.load import Site

FOLDER = "smoke"
MANIFESTS = ("job.yaml",)
KEY_ENV = "HALOGEN_API_KEY"
"""Where the Job's `halogen smoke` finds the key to send when the site sets `apiKeys`."""
FORMAT = "table"
"""What the Job prints: its log is what `kubectl logs` and Flux's events point at."""


def job_name(site: Site, config_version: str) -> str:
    """Named with the config's hash, as the Deployment's config-version annotation: a new config
    is a new Job (a Job's spec cannot change), and `kubectl get jobs` shows which config each
    checked."""
    return f"{site.spec.deployment.name[:NAME_CHARS].rstrip('-')}-smoke-{config_version[:HASH_CHARS]}"


def url(site: Site) -> str:
    """The Service by the name the proxy answers to in the cluster (image.service_names)."""
    d = site.spec.deployment
    return f"http://{d.name}.{d.namespace}.svc:{d.port}"


def command(site: Site, config_version: str) -> list[str]:
    smoke = site.spec.deployment.smoke
    return [
        *image.ENTRYPOINT[:1],
        "smoke",
        "--config-version",
        config_version,
        "--wait",
        str(smoke.wait),
        "--format",
        FORMAT,
        # `halogen smoke URL [MODEL]...`; after `--` a model id that starts with `-` stays an id.
        "--",
        url(site),
        *smoke.models,
    ]


def render(site: Site, base: dict[str, Any], env: Any) -> dict[str, str]:
    """The files of out/smoke/ by name; none while `deployment.smoke` is off."""
    d = site.spec.deployment
    smoke = d.smoke
    if not smoke.enabled:
        return {}
    # Not the Deployment's `app` label: the Service selects by it (as for the pull Job).
    labels = {k: v for k, v in base["labels"].items() if k not in base["selector"]}
    keys = site.spec.apiKeys
    context = {
        **base,
        "labels": dict(sorted({**labels, "app.kubernetes.io/component": "smoke"}.items())),
        "smoke": smoke,
        "smoke_name": job_name(site, base["config_version"]),
        "smoke_command": command(site, base["config_version"]),
        # The first of the clients' keys, from the Secret the Deployment reads it from.
        "smoke_key": (KEY_ENV, keys[0].secret, keys[0].key) if keys else None,
        "smoke_resources": {
            k: dict(sorted(v.items()))
            for k, v in (("requests", smoke.resources.requests), ("limits", smoke.resources.limits))
            if v
        },
        "manifests": list(MANIFESTS),
    }
    files = {f"{FOLDER}/{n}": env.get_template(f"smoke-{n}.j2").render(context) for n in MANIFESTS}
    files[f"{FOLDER}/kustomization.yaml"] = env.get_template("kustomization.yaml.j2").render(context)
    return files
