"""What writing out/ will do to the running pod, found by comparing the pod template about to be
written with the one in out/: Kubernetes rolls a Deployment out exactly when `spec.template`
changes, so no list of fields is kept here."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from halogen import image, yamlio

DEPLOYMENT = "deployment.yaml"
SHOWN = 3
"""Changed paths named in the message; the rest are counted."""


def pod_template(text: bytes) -> Any:
    """`spec.template` of a Deployment manifest; None when it cannot be read."""
    from ruamel.yaml import YAML
    from ruamel.yaml.error import YAMLError

    try:
        manifest = YAML(typ="safe", pure=True).load(text)
        return manifest["spec"]["template"]
    except (YAMLError, KeyError, TypeError):
        return None


def changed(old: Any, new: Any, path: yamlio.Path_ = ()) -> Iterator[yamlio.Path_]:
    """The paths whose values differ, deepest first-differing point of each branch."""
    if isinstance(old, dict) and isinstance(new, dict):
        for key in sorted(old.keys() | new.keys(), key=str):
            yield from changed(old.get(key), new.get(key), (*path, str(key)))
    elif isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        for i, (a, b) in enumerate(zip(old, new, strict=True)):
            yield from changed(a, b, (*path, i))
    elif old != new:
        yield path


def snapshot(out: Path) -> dict[str, bytes]:
    """What out/ holds of the Deployment and the config, read before it is replaced."""
    held = {}
    for name in (DEPLOYMENT, image.CONFIG_FILE):
        with contextlib.suppress(OSError):
            held[name] = (out / name).read_bytes()
    return held


def verdict(before: Mapping[str, bytes], files: Mapping[str, bytes]) -> str | None:
    """One line on what replacing out/ (`before`: its `snapshot`) with `files` does to the pod:
    it rolls (and why), or it keeps running while the proxy reloads the config; None when out/
    had no Deployment or neither changed. No mode is asked: under `restart` a new config is a new
    pod template, so the second case only arises under `reload`."""
    if DEPLOYMENT not in before:
        return None
    old, new = pod_template(before[DEPLOYMENT]), pod_template(files[DEPLOYMENT])
    if old is None or new is None:
        return None
    if old != new:
        paths = [yamlio.dotted(("spec", "template", *p)) for p in changed(old, new)]
        more = f" and {len(paths) - SHOWN} more" if len(paths) > SHOWN else ""
        hint = ""
        if paths == ["spec.template.metadata.annotations.config-version"]:
            hint = "; with deployment.onConfigChange: reload the config would change in place"
        return f"this build rolls the pod (every model loads again): {', '.join(paths[:SHOWN])}{more} changed{hint}"
    if before.get(image.CONFIG_FILE) != files[image.CONFIG_FILE]:
        return (
            "this build keeps the pod: the kubelet updates its config file within about a minute "
            "and the proxy reloads it, restarting only the models whose command changed"
        )
    return None
