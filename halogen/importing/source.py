"""Read the llama-swap config being imported: what llama-swap itself would read, with each key
it ignores, or halogen cannot run, taken out and noted instead of refused.

As llama-swap at 0bdb3720 reads it (internal/config/load.go, LoadConfigFromReader): its YAML
decoder skips keys it does not know (the seed's `ttl`, `logRequests`), and a null section is an
empty one."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from halogen import yamlio
from halogen.diagnostics import Invalid, errors
from halogen.importing.notes import Note, at
from halogen.llamaswap.config import UNSUPPORTED_TOP, Config, Filters, Model
from halogen.typed import parse


def _sweep(
    doc: yamlio.Document,
    mapping: dict[str, Any],
    path: yamlio.Path_,
    known: set[str],
    notes: list[Note],
    raw: dict[str, Any],
) -> None:
    for key in list(mapping):
        if key in known:
            continue
        value = mapping.pop(key)
        notes.append(
            Note(
                "not carried", at(doc, (*path, key)), f"`{key}` is no llama-swap key (llama-swap ignores it)"
            )
        )
        _keep(raw, (*path, key), value)


def _keep(raw: dict[str, Any], path: yamlio.Path_, value: Any) -> None:
    """Put `value` at `path` in the report's raw section."""
    node = raw
    for part in path[:-1]:
        node = node.setdefault(str(part), {})
    node[str(path[-1])] = value


def read(path: Path) -> tuple[Config, Config, yamlio.Document, list[Note], dict[str, Any]]:
    """The config as the site means it, the config as llama-swap ran it (they differ by the fixes
    made here), its document (for positions), the notes, and what was taken out, raw. Raises
    `Invalid` for what llama-swap would refuse to read at all."""
    doc = yamlio.read(path, path.name, what="config")
    data = doc.data
    if not isinstance(data, dict) or "models" not in data:
        raise Invalid(
            [
                doc.diagnostic(
                    (),
                    "a llama-swap config is a mapping with a `models` key",
                    "pass llama-swap's config.yaml",
                )
            ]
        )
    notes: list[Note] = []
    raw: dict[str, Any] = {}
    moved = False  # the top-level `ttl` became globalTTL
    for key in list(data):
        if key in UNSUPPORTED_TOP:
            value = data.pop(key)
            if value not in (UNSUPPORTED_TOP[key], None, {}, []):
                notes.append(
                    Note(
                        "not carried",
                        at(doc, (key,)),
                        f"`{key}` configures llama-swap's web UI, which halogen serve does not have yet",
                    )
                )
                _keep(raw, (key,), value)
        elif key == "store":
            # A file on the machine llama-swap ran on: the site's pod has no volume for it.
            value = data.pop(key)
            if value not in (None, {}):
                notes.append(
                    Note(
                        "not carried",
                        at(doc, (key,)),
                        "`store.path` is a file on the machine llama-swap ran on; the site's pod has "
                        "no volume for it, so activity is kept in memory (metricsMaxInMemory)",
                    )
                )
                _keep(raw, (key,), value)
        elif key == "ttl" and "globalTTL" not in data and isinstance(data[key], int) and data[key] >= 0:
            ttl = data.pop(key)
            data["globalTTL"] = ttl
            moved = bool(ttl)
            notes.append(
                Note(
                    "fixed",
                    at(doc, (key,)),
                    f"`ttl: {ttl}` is a key llama-swap ignores, so no model was ever unloaded; it is "
                    f"`globalTTL: {ttl}` now, as meant: an idle model unloads after {ttl} s",
                )
            )
    _sweep(doc, data, (), set(Config.model_fields), notes, raw)
    for key in (
        "routing",
        "selectors",
        "profiles",
        "peers",
        "macros",
        "groups",
        "hooks",
        "apiKeys",
        "ui",
        "performance",
    ):
        if key in data and data[key] is None:
            del data[key]  # llama-swap reads a null section as an empty one
    models = data.get("models")
    for mid, model in models.items() if isinstance(models, dict) else []:
        if isinstance(model, dict):
            _sweep(doc, model, ("models", mid), set(Model.model_fields), notes, raw)
            if isinstance(model.get("filters"), dict):
                _sweep(
                    doc, model["filters"], ("models", mid, "filters"), set(Filters.model_fields), notes, raw
                )
    hooks = data.get("hooks")
    startup = hooks.get("on_startup") if isinstance(hooks, dict) else None
    if isinstance(startup, dict) and "preload" in startup and startup["preload"] is None:
        startup["preload"] = []
        notes.append(
            Note(
                "fixed",
                at(doc, ("hooks", "on_startup", "preload")),
                "`preload` is null, which llama-swap's schema refuses: the site preloads nothing",
            )
        )
    groups = data.get("groups")
    for gid, group in groups.items() if isinstance(groups, dict) else []:
        if isinstance(group, dict) and "members" not in group:
            notes.append(
                Note(
                    "fixed",
                    at(doc, ("groups", gid)),
                    f"group {gid!r} has no `members`, which llama-swap's schema requires",
                )
            )
            group["members"] = []
    config, problems = parse(Config, doc)
    if config is None or errors(problems):
        raise Invalid(problems)
    ran = config.model_copy(update={"globalTTL": 0}) if moved else config
    return config, ran, doc, notes, raw
