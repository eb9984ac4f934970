"""The compiler as one flow: load, check, render, verify. Pure but for reading the inputs."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from halogen import image
from halogen.compiler import budget, cluster, coverage, facts, fit, placement
from halogen.compiler.placement import Placement
from halogen.compiler.site import checks, nodes, sources
from halogen.compiler.site.load import Site, load
from halogen.diagnostics import Diagnostic, Invalid, errors
from halogen.llamaswap import config as ls
from halogen.llamaswap import io as llamaswap_io
from halogen.llamaswap.resolve import resolve
from halogen.llamaswap.resolved import FieldPath, Resolved, Unresolvable
from halogen.modelfiles import FileSource


@dataclass(frozen=True)
class NodeCompiled:
    """One node of a site with several: its view of the site and its config."""

    site: Site
    config: ls.Config


@dataclass(frozen=True)
class Compiled:
    site: Site
    config: ls.Config
    warnings: tuple[Diagnostic, ...]
    # With `nodes:`, each node's view and config by node id (`config` is the front door's), and
    # where the models went.
    nodes: dict[str, NodeCompiled] = field(default_factory=dict)
    placement: Placement | None = None


def _site_path(site: Site, path: FieldPath) -> FieldPath | None:
    """Where in halogen.yaml the user wrote what the config holds at `path`, if there."""
    from halogen.compiler.render.config import matrix_vars

    match path:
        case ("routing", "router", "settings", "groups", str() as gid, *_) if gid in site.spec.groups:
            return ("groups", gid)  # members are not written in halogen.yaml: the group is
        case ("routing", "router", "settings", "matrix", "sets", *rest):
            return ("matrix", "sets", *rest[:1])
        case ("routing", "router", "settings", "matrix", "evict_costs", str() as key):
            ids = {var: mid for mid, var in matrix_vars(site).items()}
            return ("matrix", "evictCosts", ids.get(key, key))
        case ("selectors" | "profiles" as kind, str() as name, *rest) if name in getattr(site.spec, kind):
            return (kind, name, *rest)
        case ("peers", str() as name, *rest) if name in site.spec.peers:
            return ("peers", name, *rest[:1])
        case ("hooks", "on_startup", "preload", int() as i):
            return ("llamaSwap", "preload", i)
        case ("macros", str() as name) if name in site.spec.backends:
            return ("backends", name, "args")  # a backend is a macro in the written config
        case ("macros", str() as name) if name in site.spec.macros:
            return ("macros", name)
    return None


def _problem_position(site: Site, exc: Unresolvable) -> list[Diagnostic]:
    """Map a config-level problem back to the input file that caused it."""
    out = []
    for p in exc.problems:
        if p.path[2:] == ("proxy",) and p.path[1] in site.models:
            # Model files have no `proxy`: the default one needs ${PORT} in the raw cmd.
            out.append(
                site.models[str(p.path[1])].doc.diagnostic(
                    ("cmd",),
                    "cmd does not use ${PORT}",
                    "add --port ${PORT}: the proxy reaches the model on the port it hands out",
                )
            )
        elif len(p.path) >= 2 and p.path[0] == "models" and p.path[1] in site.models:
            model = site.models[str(p.path[1])]
            out.append(model.doc.diagnostic(tuple(p.path[2:]), p.message, p.hint))
        elif (where := _site_path(site, p.path)) is not None:
            out.append(site.doc.diagnostic(where, p.message, p.hint))
        else:
            out.append(site.doc.diagnostic((), f"{'.'.join(map(str, p.path))}: {p.message}", p.hint))
    return out


def _mount_problems(site: Site, resolved: Resolved) -> list[Diagnostic]:
    """The file each model loads, raw `cmd` and `env` included, must lie under the models mount;
    a command llama-server would refuse (`--model=X`), or that fetches its model at run time
    (-hf, -mu, --models-dir, ...), is refused: the pod sees only that mount."""
    from pathlib import PurePosixPath

    from halogen.llamacpp import cmdline

    mount = PurePosixPath(site.spec.deployment.models.mountPath)
    out = []
    for model_id, runnable in resolved.models.items():
        model = site.models[model_id]
        key = ("cmd",) if model.spec.cmd is not None else ("file",)
        line = cmdline.of_command(runnable.argv, runnable.env)
        for word in line.refused:
            out.append(model.doc.diagnostic(key, word.message, word.hint))
        for fetch in line.fetching:
            out.append(
                model.doc.diagnostic(
                    key,
                    f"{fetch} makes llama-server fetch a model at run time",
                    f"name a file under the models mount {mount}: `file`, or -m in a raw `cmd`; "
                    "`halogen pull` puts it there",
                )
            )
        if line.model is not None:
            path = PurePosixPath(line.model)
            if ".." in path.parts or mount not in path.parents:
                out.append(
                    model.doc.diagnostic(
                        key,
                        f"model path {path} is not under the models mount {mount}",
                        "the pod sees only that mount",
                    )
                )
    return out


def _sourced(root: Path) -> tuple[Site, list[FileSource], list[Diagnostic]]:
    """The site loaded and checked, file by file then across files, with its models' sources:
    where both `halogen validate` and `halogen pull` start. Raises `Invalid` when it cannot load."""
    site, found = load(root)
    if site is None:
        raise Invalid(found)
    found += checks.check(site)
    found += nodes.check(site)
    files, problems = sources.sources(site)
    return site, files, found + problems


def pulled(root: Path) -> tuple[Site, list[FileSource], list[Diagnostic]]:
    """What `halogen pull` fetches for the site at `root`, with halogen.lock's sizes and hashes,
    and the warnings; raises `Invalid` with every error found."""
    from halogen.compiler.render.wanted import from_sources
    from halogen.compiler.site.lock import LOCK_FILE, read_lock

    site, files, found = _sourced(root)
    if errors(found):
        raise Invalid(found)
    return site, from_sources(files, read_lock(root / LOCK_FILE)), found


def compile_config(root: Path) -> Compiled:
    """Everything `halogen validate` checks; raises `Invalid` with every error found."""
    site, _, found = _sourced(root)
    found += facts.check(site)
    found += budget.check(site)
    found += coverage.check(site)
    if site.spec.nodes and not errors(found):
        return _compile_nodes(site, found)
    config, found = _compile_view(site, found)
    return Compiled(site, config, tuple(found))


def _compile_view(site: Site, found: list[Diagnostic]) -> tuple[ls.Config, list[Diagnostic]]:
    """The config of one proxy (the site's, or one node's view of it), checked as it runs."""
    from halogen.compiler.render import config as render_config

    routing, problems = fit.fitted(site)
    found = found + problems
    if errors(found):
        raise Invalid(found)
    config = render_config.render(site, {mid: facts.metadata(site, m) for mid, m in site.models.items()})
    if routing is not None:
        config = config.model_copy(update={"routing": config.routing.model_copy(update={"router": routing})})
    try:
        resolved = resolve(config)
    except Unresolvable as exc:
        raise Invalid(found + _problem_position(site, exc)) from None
    found += _mount_problems(site, resolved)
    if resolved.matrix is not None:
        sizes = {m: e.total for m, e in budget.needs(site).items()}
        found += budget.matrix_check(site, resolved.matrix.program, sizes)
    if errors(found):
        raise Invalid(found)
    return config, found


def _rpc_backends(site: Site, placed: Placement) -> list[Diagnostic]:
    """A node's one rpc-server runs with one backend's env and devices: the split models it
    helps must share it."""
    out = []
    for node_id in placed.nodes:
        first: tuple[str, str] | None = None
        for split in placed.helped_by(node_id):
            model = site.models[split.model]
            backend = checks.backend_of(site, model) or ""
            if first is None:
                first = (backend, split.model)
            elif backend != first[0]:
                out.append(
                    model.doc.diagnostic(
                        ("split",) if model.spec.split else ("backend",),
                        f"node {node_id!r} runs one rpc-server, with backend {first[0]!r} for {first[1]!r}, "
                        f"and this split model uses {backend!r}",
                        "split the models a node helps with one backend, or over other nodes",
                    )
                )
    return out


def _compile_nodes(site: Site, found: list[Diagnostic]) -> Compiled:
    """Place the models, then compile each node's view as a site of its own."""
    placed, problems = placement.place(site)
    if placed is None:
        raise Invalid(found + problems)
    problems = cluster.split_problems(site, placed)
    if problems:
        raise Invalid(found + problems)
    parts = {}
    for node_id in placed.nodes:
        view = cluster.node_site(site, placed, node_id)
        mine = list(budget.check(view))
        if errors(mine):
            raise Invalid(found + mine)
        config, seen = _compile_view(view, [])
        found += [d for d in [*mine, *seen] if d not in found]
        parts[node_id] = NodeCompiled(view, config)
    found += _rpc_backends(site, placed)
    if errors(found):
        raise Invalid(found)
    door = next(n for n, node in site.spec.nodes.items() if node.frontDoor)
    return Compiled(site, parts[door].config, tuple(found), parts, placed)


def _wanted(root: Path, site: Site) -> list[FileSource]:
    """What the pull Job fetches: the models' sources, with halogen.lock's sizes and hashes."""
    from halogen.compiler.render.wanted import (
        from_sources,  # the sources document's models: build and pull only
    )
    from halogen.compiler.site.lock import LOCK_FILE, read_lock

    return from_sources(sources.sources(site)[0], read_lock(root / LOCK_FILE))


def files_of(root: Path, compiled: Compiled) -> dict[str, bytes]:
    """The bytes of every file in out/, checked with strict kubernetes-validate."""
    from halogen.compiler.render import kube, manifests

    if compiled.placement is not None:
        return _node_files(root, compiled, compiled.placement)
    config_text = llamaswap_io.dump(compiled.config, manifests.HEADER + "\n")
    site = compiled.site
    files = manifests.render(site, config_text, _wanted(root, site), budget.environment(site))
    problems = kube.validate(files, compiled.site.spec.deployment.kubernetesVersion, compiled.site.doc)
    if problems:
        raise Invalid(list(compiled.warnings) + problems)
    out = {image.CONFIG_FILE: config_text, **files}
    return {name: text.encode("utf-8") for name, text in sorted(out.items())}


def _node_files(root: Path, compiled: Compiled, placed: Placement) -> dict[str, bytes]:
    """out/ for a site with several nodes (halogen.compiler.render.nodes)."""
    from halogen.compiler.render import kube, manifests
    from halogen.compiler.render import nodes as render_nodes

    site = compiled.site
    outputs = {}
    for node_id, part in compiled.nodes.items():
        helped = placed.helped_by(node_id)
        rpc = None
        if helped:
            backend = site.spec.backends[checks.backend_of(site, site.models[helped[0].model]) or ""]
            held = sum(placed.nodes[node_id].held.values())
            rpc = render_nodes.RpcServer(backend, held, tuple(sorted({s.main for s in helped})))
        outputs[node_id] = render_nodes.NodeOutput(
            part.site,
            llamaswap_io.dump(part.config, manifests.HEADER + "\n"),
            _wanted(root, part.site),
            budget.environment(part.site),
            rpc,
        )
    files = render_nodes.render(site, outputs)
    manifests_only = {n: t for n, t in files.items() if not n.endswith("/" + image.CONFIG_FILE)}
    problems = kube.validate(
        manifests_only, compiled.site.spec.deployment.kubernetesVersion, compiled.site.doc
    )
    if problems:
        raise Invalid(list(compiled.warnings) + problems)
    return {name: text.encode("utf-8") for name, text in sorted(files.items())}


def build(root: Path) -> tuple[dict[str, bytes], tuple[Diagnostic, ...]]:
    """The bytes of every file in out/, and the warnings met on the way."""
    compiled = compile_config(root)
    return files_of(root, compiled), compiled.warnings
