"""The site as a llama-swap config: backends become macros, model files become models."""

from __future__ import annotations

import shlex
from collections.abc import Mapping, Sequence
from typing import Any

from halogen.compiler.site.checks import backend_of, model_file
from halogen.compiler.site.inputs import Backend, SitePeer
from halogen.compiler.site.load import Model, Site
from halogen.llamaswap import config as ls
from halogen.llamaswap import matrix as dsl


def _join(args: Sequence[str]) -> str:
    # ${...} macros are kept readable; anything else shlex would split is quoted.
    return " ".join(a if a.startswith("${") and a.endswith("}") else shlex.quote(a) for a in args)


def backend_command(backend: Backend) -> str:
    return _join([backend.binary, "--port", "${PORT}", "--host", backend.host, *backend.args])


def _cmd(site: Site, model: Model, backend_id: str) -> str:
    spec = model.spec
    if spec.cmd is not None:
        return spec.cmd if spec.cmd.endswith("\n") else spec.cmd + "\n"
    lines = [f"${{{backend_id}}}"]
    path = model_file(site, model)
    mount = site.spec.deployment.models.mountPath.rstrip("/")
    lines.append(_join(["-m", f"{mount}/{path}"]))
    if spec.contextSize is not None:
        lines.append(f"--ctx-size {spec.contextSize}")
    if spec.args:
        lines.append(_join(spec.args))
    return "\n".join(lines) + "\n"


def variant_id(model_id: str, variant: str) -> str:
    """The id clients ask for to get `variant` of a model: `<id>:<variant>`, Ollama's tag form."""
    return f"{model_id}:{variant}"


def _model(site: Site, model: Model, known: Mapping[str, Any]) -> ls.Model:
    spec = model.spec
    backend_id = backend_of(site, model) or ""
    backend = site.spec.backends[backend_id]
    env = {**backend.env, **spec.env}
    fields: dict[str, object] = {
        "cmd": _cmd(site, model, backend_id),
        "name": spec.name,
        "description": spec.description,
        "env": [f"{k}={v}" for k, v in sorted(env.items())],
        "aliases": sorted(spec.aliases),
        "unlisted": spec.unlisted,
        # What the model file writes under llamaSwap.metadata, then what halogen knows.
        "metadata": {**spec.llamaSwap.metadata, **known},
        "filters": ls.Filters(
            stripParams=", ".join(spec.filters.stripParams),
            setParams=dict(sorted(spec.filters.setParams.items())),
            setParamsByID={
                variant_id(model.id, name): dict(sorted(spec.variants[name].items()))
                for name in sorted(spec.variants)
            },
        ),
    }
    optional = {
        "ttl": spec.ttl,
        "cmdStop": spec.cmdStop,
        "checkEndpoint": spec.checkEndpoint,
        "useModelName": spec.useModelName,
        "concurrencyLimit": spec.concurrencyLimit,
        "sendLoadingState": spec.sendLoadingState,
    }
    fields.update({k: v for k, v in optional.items() if v is not None})
    extra = spec.llamaSwap
    carried = {
        "proxy": extra.proxy,
        "unloadTimeout": extra.unloadTimeout,
        "timeouts": extra.timeouts,
        "compat": extra.compat,
        "capabilities": extra.capabilities,
    }
    fields.update({k: v for k, v in carried.items() if v is not None})
    return ls.Model.model_validate(fields)


def _peer(peer: SitePeer) -> ls.Peer:
    """A site's peer as llama-swap's: the key as `${env.NAME}`, which the Deployment fills from
    the Secret, so out/ never holds it."""
    timeouts = {k: v for k, v in peer.timeouts.model_dump().items() if v is not None}
    return ls.Peer(
        proxy=peer.proxy,
        apiKey="" if peer.apiKey is None else f"${{env.{peer.apiKey.env}}}",
        models=list(peer.models),
        filters=ls.PeerFilters(
            stripParams=", ".join(peer.filters.stripParams),
            setParams=dict(sorted(peer.filters.setParams.items())),
        ),
        timeouts=ls.PeerTimeouts(**timeouts),
    )


def matrix_vars(site: Site) -> dict[str, str]:
    """A var for each model id the site's matrix names. llama-swap's schema requires vars,
    named with 1-8 letters and digits, though its loader reads model ids too."""
    matrix = site.spec.matrix
    if matrix is None:
        return {}
    named = [*(i for text in matrix.sets.values() for i in dsl.identifiers(text)), *matrix.evictCosts]
    ids = sorted({i for i in named if i in site.models})
    taken = set(named) | set(matrix.sets)
    keys = (f"m{n}" for n in range(1, len(ids) + len(taken) + 2))
    return dict(zip(ids, (k for k in keys if k not in taken), strict=False))


def _router(site: Site) -> ls.Router:
    spec = site.spec
    if spec.matrix is None:
        groups = {}
        for gid in sorted(spec.groups):
            members = sorted(mid for mid, m in site.models.items() if m.spec.group == gid)
            if members:
                groups[gid] = ls.Group(**spec.groups[gid].model_dump(), members=members)
        return ls.Router(use="group", settings=ls.RouterSettings(groups=groups))
    names = matrix_vars(site)
    matrix = ls.Matrix(
        vars={var: mid for mid, var in names.items()},
        evict_costs={names.get(k, k): v for k, v in spec.matrix.evictCosts.items()},
        sets={name: dsl.rename(text, names) for name, text in spec.matrix.sets.items()},
    )
    return ls.Router(use="matrix", settings=ls.RouterSettings(matrix=matrix))


def render(site: Site, metadata: Mapping[str, Mapping[str, Any]]) -> ls.Config:
    """The llama-swap config of a site; `metadata`: what halogen knows of each model (its lock's
    facts and estimate, halogen.compiler.facts), by model id."""
    spec = site.spec
    used_backends = sorted({backend_of(site, m) or "" for m in site.models.values() if m.spec.cmd is None})
    macros: dict[str, ls.MacroValue] = dict(spec.macros)
    for bid in used_backends:
        macros[bid] = backend_command(spec.backends[bid])
    priority = {mid: m.spec.priority for mid, m in sorted(site.models.items()) if m.spec.priority}
    scheduler = ls.Scheduler(settings=ls.SchedulerSettings(fifo=ls.Fifo(priority=priority)))
    swap = spec.llamaSwap
    # Every llamaSwap setting but preload is a top-level key of the same name.
    return ls.Config(
        **swap.model_dump(exclude={"preload"}),
        macros=macros,
        models={mid: _model(site, site.models[mid], metadata.get(mid, {})) for mid in sorted(site.models)},
        routing=ls.Routing(scheduler=scheduler, router=_router(site)),
        selectors={sid: ls.Selector.model_validate(s.model_dump()) for sid, s in spec.selectors.items()},
        profiles={pid: ls.Profile.model_validate(p.model_dump()) for pid, p in spec.profiles.items()},
        peers={pid: _peer(peer) for pid, peer in sorted(spec.peers.items())},
        hooks=ls.Hooks(on_startup=ls.OnStartup(preload=list(swap.preload))),
        apiKeys=[f"${{env.{key.env}}}" for key in spec.apiKeys],
    )
