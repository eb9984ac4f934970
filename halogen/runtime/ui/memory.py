"""`GET /api/halogen/memory`: what the Memory page draws. The budget; each model's estimate (from
halogen.lock, through config.yaml's metadata) beside what its process holds now (PSS); the pod's
cgroup and the GPU's GTT pool; the sets of models the router lets run together, the one in use
marked; and the requests waiting in the queue, with their place. llama-swap has no such page: its
UI knows neither estimates nor budgets."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from halogen.llamaswap.resolved import Resolved
from halogen.runtime.apis import observed
from halogen.runtime.base import locked
from halogen.runtime.forward.context import Runtime, runtime_of
from halogen.runtime.process.upstream import State


def _facts(resolved: Resolved, model_id: str) -> dict[str, Any]:
    """What halogen.lock told the build about the model's file (config.yaml's metadata)."""
    runnable = resolved.models[model_id]
    meta = runnable.metadata
    facts = {
        key: meta.get(key) for key in ("architecture", "parameterSize", "quantizationLevel", "contextLength")
    }
    facts["fileSize"] = locked.file_size(runnable)
    return {k: v for k, v in facts.items() if isinstance(v, str | int) and not isinstance(v, bool)}


def sets(runtime: Runtime) -> list[dict[str, Any]]:
    """The sets of models that may stay loaded together, in the order the router tries them:
    the matrix's sets (`MatrixEviction`), or one per swap group (`GroupEviction`; a group that
    swaps holds one of its members at a time). `current` marks the set the running models are
    in now."""
    resolved = runtime.resolved
    running = sorted(m for m in runtime.swapper.active() if m in resolved.models)

    def estimate(members: list[str]) -> int | None:
        known = [locked.memory(resolved.models[m]) for m in members if m in resolved.models]
        return sum(k for k in known if k is not None) if known and None not in known else None

    out: list[dict[str, Any]] = []
    if resolved.matrix is not None:
        program = resolved.matrix.program
        now = program.containing(running)
        for compiled in program.sets:
            members = sorted(compiled.support)
            out.append(
                {
                    "name": compiled.name,
                    "rule": compiled.dsl,
                    "models": members,
                    "estimate": estimate(members),
                    "current": bool(running) and compiled.name == now,
                }
            )
        return out
    busy_groups = {resolved.models[m].group for m in running}
    for gid, group in sorted(resolved.groups.items()):
        members = sorted(m for m in resolved.models if resolved.models[m].group == gid)
        if not members:
            continue
        # A swapping group holds its largest member at most; one that does not swap, all.
        each = [e for e in (locked.memory(resolved.models[m]) for m in members) if e is not None]
        known = None if len(each) < len(members) else ([max(each)] if group.swap else each)
        out.append(
            {
                "name": gid,
                "rule": ("swap" if group.swap else "together")
                + (", exclusive" if group.exclusive else "")
                + (", persistent" if group.persistent else ""),
                "models": members,
                "estimate": None if known is None else sum(known),
                "current": gid in busy_groups,
            }
        )
    return out


def document(runtime: Runtime, observer: observed.Observer) -> dict[str, Any]:
    resolved = runtime.resolved
    swapper = runtime.swapper
    queued = swapper.queued()
    in_flight = swapper.in_flight()
    models = []
    for model_id in sorted(resolved.models):
        runnable = resolved.models[model_id]
        slot = swapper.slot(model_id)
        pid = slot.upstream.pid if slot.phase is not State.STOPPED else None
        models.append(
            {
                "id": model_id,
                "name": runnable.name,
                "description": runnable.description,
                "state": str(slot.phase),
                "group": runnable.group,
                "rule": slot.rule,
                "estimate": locked.memory(runnable),
                "observed": observed.pss(pid, observer.proc) if pid is not None else None,
                "pid": pid,
                "inFlight": in_flight.get(model_id, 0),
                "queued": queued.get(model_id, 0),
                "facts": _facts(resolved, model_id),
            }
        )
    current, limit = observed.cgroup_memory(observer.proc, observer.cgroup_root)
    return {
        "budget": observer.budget,
        "cgroup": {"current": current, "max": limit},
        "gtt": [
            {"card": card, "used": used, "total": total}
            for card, (used, total) in observed.gtt(observer.drm).items()
        ],
        "router": "matrix" if resolved.matrix is not None else "group",
        "models": models,
        "sets": sets(runtime),
        "waiting": [
            {"position": at, "model": model_id, "priority": priority}
            for at, model_id, priority in swapper.waiting()
        ],
    }


async def memory(request: web.Request) -> web.Response:
    return web.json_response(document(runtime_of(request), request.app[observed.OBSERVER]))
