"""Does each model run as before? Both configs go through the project's own llama-swap
`resolve()`, one model at a time (so ports compare equal), and what each model runs is
compared: the program, its model file, context and every flag at the value llama-server keeps
(the last), its environment, names, filters and timeouts."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from halogen.compiler.site import flags
from halogen.llamaswap.config import Config, Hooks, Routing
from halogen.llamaswap.resolve import resolve
from halogen.llamaswap.resolved import Runnable, Unresolvable

PORT = 5800


@dataclass(frozen=True)
class Difference:
    model: str
    key: str
    before: Any
    after: Any
    why: str  # "" = not intended


def alone(config: Config) -> dict[str, Runnable | str]:
    """Each model resolved in a config of its own; a string says why it does not resolve."""
    out: dict[str, Runnable | str] = {}
    for mid, model in config.models.items():
        single = config.model_copy(
            update={
                "models": {mid: model},
                "startPort": PORT,  # the port is the proxy's to hand out: the same on both sides
                "groups": {},
                "matrix": None,
                "routing": Routing(),
                "selectors": {},
                "profiles": {},
                "peers": {},
                "hooks": Hooks(),
                "apiKeys": [],
            }
        )
        try:
            out[mid] = resolve(single).models[mid]
        except Unresolvable as exc:
            out[mid] = "; ".join(p.message for p in exc.problems)
    return out


def facts(run: Runnable) -> dict[str, Any]:
    """What a model runs, as compared: flags by their canonical names at their last value."""
    out: dict[str, Any] = {"program": run.argv[0] if run.argv else ""}
    positional = []
    named: dict[str, str | None] = {"--host": "127.0.0.1"}  # llama-server's default
    for flag in flags.parse(list(run.argv[1:])):
        if flag.name:
            named[flag.name] = flag.value
        else:
            positional.append(flag.value)
    out.update({f"flag {k}": v for k, v in sorted(named.items())})
    out["arguments"] = positional
    out["env"] = sorted(run.env)
    out.update(
        {
            "stop": run.stop_argv,
            "proxy": run.proxy,
            "check endpoint": run.check_endpoint,
            "aliases": sorted(run.aliases),
            "unlisted": run.unlisted,
            "ttl": run.ttl,
            "unload timeout": run.unload_timeout,
            "use model name": run.use_model_name,
            "concurrency limit": run.concurrency_limit,
            "strip params": sorted(run.strip_params),
            "set params": dict(run.set_params),
            "params by id": {k: dict(v) for k, v in run.set_params_by_id.items()},
            "loading state": run.send_loading_state,
            "timeouts": run.timeouts,
            "ignore websockets": run.ignore_websockets,
            "capabilities": run.capabilities,
            "name": run.name,
            "description": run.description,
        }
    )
    out.update({f"metadata {k}": v for k, v in run.metadata.items()})
    return out


def differences(before: Runnable, after: Runnable, intended: dict[str, str]) -> list[Difference]:
    old, new = facts(before), facts(after)
    found = []
    for key in old:
        if key.startswith("metadata ") and key not in new:
            found.append(Difference(before.id, key, old[key], None, intended.get(key, "")))
        elif old[key] != new.get(key) and not key.startswith("metadata "):
            found.append(Difference(before.id, key, old[key], new.get(key), intended.get(key, "")))
        elif key.startswith("metadata ") and old[key] != new[key]:
            found.append(Difference(before.id, key, old[key], new[key], intended.get(key, "")))
    for key in new:
        if key not in old and not key.startswith("metadata "):
            found.append(Difference(before.id, key, None, new[key], intended.get(key, "")))
    return found


def compare(
    original: Config, compiled: Config, intended: dict[str, dict[str, str]]
) -> tuple[list[str], list[Difference]]:
    """A line per imported model for the report, and every difference found."""
    before, after = alone(original), alone(compiled)
    lines: list[str] = []
    found: list[Difference] = []
    for mid in sorted(after):
        old, new = before.get(mid), after[mid]
        if not isinstance(old, Runnable) or not isinstance(new, Runnable):
            continue
        diffs = differences(old, new, intended.get(mid, {}))
        found += diffs
        if not diffs:
            lines.append(f"`{mid}`: the same model file, context, flags and settings")
        for d in diffs:
            why = f"intended: {d.why}" if d.why else "NOT intended: please report it"
            lines.append(f"`{mid}`: {d.key}: {d.before!r} -> {d.after!r} ({why})")
    return lines, found
