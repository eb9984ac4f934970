"""Rules that span files: every one reports with the position of the value that breaks it."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import PurePosixPath

from halogen import image, models_folder
from halogen.compiler.site import flags
from halogen.compiler.site.inputs import GPU_RESOURCES
from halogen.compiler.site.load import Model, Site
from halogen.diagnostics import Diagnostic
from halogen.llamaswap import names
from halogen.llamaswap.resolved import RESERVED

MACRO_REF = re.compile(r"\$\{([^}]*)\}")
BUILTIN_MACROS = {"PORT", "MODEL_ID"}


def backend_of(site: Site, model: Model) -> str | None:
    """The backend a model names, or the site's only backend when it names none."""
    if model.spec.backend:
        return model.spec.backend
    if len(site.spec.backends) == 1:
        return next(iter(site.spec.backends))
    return None


def model_file(site: Site, model: Model) -> PurePosixPath | None:
    """The GGUF path relative to the models mount, or None when it would leave the mount."""
    return _in_mount(site, model)[0]


def _in_mount(site: Site, model: Model) -> tuple[PurePosixPath | None, str | None]:
    """The model's `file` relative to the mount (an absolute one under it is accepted), or None
    and why not (None too for an absolute path elsewhere)."""
    name = model.spec.file
    if name is None:
        return None, None
    if name.startswith("/"):
        mount = PurePosixPath(site.spec.deployment.models.mountPath)
        path = PurePosixPath(name)
        if mount not in path.parents:
            return None, None
        name = str(path.relative_to(mount))
    why = models_folder.problem(name)
    return (None, why) if why else (models_folder.relative(name), None)


def check(site: Site) -> list[Diagnostic]:
    return [
        *_ids_and_aliases(site),
        *_references(site),
        *_macros(site),
        *_models(site),
        *_flags(site),
        *_deployment(site),
    ]


def _ids_and_aliases(site: Site) -> Iterator[Diagnostic]:
    """Ids and aliases share one namespace, compared without case (file systems and
    clients disagree on case; llama-swap does not) and without a trailing ':latest' (the
    runtime accepts it on every name, and the Ollama listing shows `a` as `a:latest`)."""
    taken: dict[str, str] = {}  # lower-cased name -> what holds it, for the message
    for model_id in sorted(site.models):
        key = model_id.lower()
        if key in taken:
            yield site.models[model_id].doc.diagnostic(
                (),
                f"model id {model_id!r} clashes with {taken[key]}",
                "ids are compared without case: rename one file",
            )
        taken.setdefault(key, f"the id of {model_id!r}")
    for model_id in sorted(site.models):
        model = site.models[model_id]
        for i, alias in enumerate(model.spec.aliases):
            key = alias.lower()
            if key in taken or names.fold(key) in taken:
                yield model.doc.diagnostic(
                    ("aliases", i),
                    f"alias {alias!r} is already {taken.get(key) or taken[names.fold(key)]}",
                    "aliases are unique across ids and aliases, without case or ':latest'",
                )
            elif key.endswith(names.LATEST):
                yield model.doc.diagnostic(
                    ("aliases", i),
                    "aliases may not end in ':latest'",
                    "':latest' is accepted on every name already",
                )
            taken.setdefault(key, f"an alias of {model_id!r}")
        for name in sorted(model.spec.variants):
            key = f"{model_id}:{name}".lower()
            if name == "latest":
                yield model.doc.diagnostic(
                    ("variants", name),
                    "a variant may not be named 'latest'",
                    "'<id>:latest' names the model itself",
                )
            elif key in taken:
                yield model.doc.diagnostic(
                    ("variants", name),
                    f"variant id {model_id + ':' + name!r} is already {taken[key]}",
                    "variant ids share the namespace of ids and aliases: rename the variant",
                )
            taken.setdefault(key, f"a variant of {model_id!r}")
    for sid in site.spec.selectors:
        if sid.lower() in taken:
            yield site.doc.diagnostic(
                ("selectors", sid),
                f"selector id {sid!r} is already {taken[sid.lower()]}",
                "selector ids are unique across ids and aliases, without case: rename the selector",
            )


def _references(site: Site) -> Iterator[Diagnostic]:
    spec = site.spec
    for model_id in sorted(site.models):
        model = site.models[model_id]
        backend = backend_of(site, model)
        if backend is None:
            yield model.doc.diagnostic(
                ("backend",),
                "no backend given and the site declares several",
                f"set backend to one of: {', '.join(sorted(spec.backends))}",
            )
        elif backend not in spec.backends:
            yield model.doc.diagnostic(
                ("backend",),
                f"backend {backend!r} is not declared in halogen.yaml",
                f"declared: {', '.join(sorted(spec.backends))}",
            )
        if model.spec.group is not None and model.spec.group not in spec.groups:
            yield model.doc.diagnostic(
                ("group",),
                f"group {model.spec.group!r} is not declared in halogen.yaml",
                f"declared: {', '.join(sorted(spec.groups)) or 'none'}",
            )
    if spec.matrix is not None and spec.groups:
        yield site.doc.diagnostic(
            ("matrix",),
            "the site declares both groups and a matrix",
            "route with one of them: remove `groups`, with `group:` in the model files, or `matrix`",
        )
    used = {m.spec.group for m in site.models.values()}
    for gid in sorted(spec.groups):
        if gid not in used:
            yield site.doc.diagnostic(
                ("groups", gid),
                f"group {gid!r} has no members and is left out",
                "set `group:` in a model file, or remove the group",
                severity="warning",
            )


def _refs(text: str) -> list[str]:
    return MACRO_REF.findall(text)


def _macros(site: Site) -> Iterator[Diagnostic]:
    spec = site.spec
    order = list(spec.macros)
    for i, (name, value) in enumerate(spec.macros.items()):
        if name in RESERVED:
            yield site.doc.diagnostic(
                ("macros", name),
                f"macro name {name!r} is reserved",
                "PORT, MODEL_ID and PID are set by the proxy",
            )
        if name in spec.backends:
            yield site.doc.diagnostic(
                ("macros", name),
                f"macro {name!r} has the name of a backend",
                "backends are macros in the written config: rename one",
            )
        for ref in _refs(value) if isinstance(value, str) else []:
            if ref == name:
                yield site.doc.diagnostic(("macros", name), f"macro {name!r} refers to itself")
            elif ref in order and order.index(ref) > i:
                yield site.doc.diagnostic(
                    ("macros", name),
                    f"macro {name!r} uses ${{{ref}}}, declared after it",
                    "a macro may use only macros declared before it: move it up",
                )
            elif ref not in order and ref not in BUILTIN_MACROS:
                yield site.doc.diagnostic(("macros", name), f"unknown macro ${{{ref}}}")
    known = set(order) | BUILTIN_MACROS
    for bid, backend in spec.backends.items():
        for j, arg in enumerate(backend.args):
            for ref in _refs(arg):
                if ref not in known:
                    yield site.doc.diagnostic(
                        ("backends", bid, "args", j),
                        f"unknown macro ${{{ref}}}",
                        f"declare it under macros; known: {', '.join(sorted(known))}",
                    )
    for model_id in sorted(site.models):
        model = site.models[model_id]
        texts: list[tuple[tuple[str | int, ...], str]] = [
            (("args", j), a) for j, a in enumerate(model.spec.args)
        ]
        if model.spec.cmd is not None:
            texts.append((("cmd",), model.spec.cmd))
        if model.spec.file is not None:
            texts.append((("file",), model.spec.file))
        for path, text in texts:
            for ref in _refs(text):
                if ref not in known | set(spec.backends):
                    yield model.doc.diagnostic(
                        path,
                        f"unknown macro ${{{ref}}}",
                        f"declare it under macros: in halogen.yaml; known: {', '.join(sorted(known))}",
                    )


def _models(site: Site) -> Iterator[Diagnostic]:
    mount = site.spec.deployment.models.mountPath
    for model_id in sorted(site.models):
        model = site.models[model_id]
        spec = model.spec
        if spec.file is not None:
            path, why = _in_mount(site, model)
            if path is None:
                yield model.doc.diagnostic(
                    ("file",),
                    f"{spec.file!r} is not under the models mount {mount}"
                    + (f": the path {why}" if why else ""),
                    f"give a path relative to {mount}, without '..'",
                )
            elif not spec.file.endswith(".gguf"):
                yield model.doc.diagnostic(
                    ("file",),
                    "file does not end in .gguf",
                    "llama-server loads GGUF files",
                    severity="warning",
                )
        limit = spec.metadata.contextLength
        if spec.contextSize is not None and limit is not None and spec.contextSize > limit:
            yield model.doc.diagnostic(
                ("contextSize",),
                f"contextSize {spec.contextSize} is above the model's contextLength {limit}",
                "lower contextSize, or correct metadata.contextLength",
            )
        if spec.cmd is None and spec.contextSize is None and "contextSize" not in model.doc.data:
            yield model.doc.diagnostic(
                (),
                "contextSize is missing",
                "set contextSize: llama-server's default is the model's full context, which may not fit",
                severity="warning",
            )
        if "model" in spec.filters.setParams or "model" in spec.filters.stripParams:
            yield model.doc.diagnostic(
                ("filters",), "filters may not touch `model`", "use useModelName to rename the model upstream"
            )
        for name, params in sorted(spec.variants.items()):
            if "model" in params:
                yield model.doc.diagnostic(
                    ("variants", name, "model"),
                    "a variant may not set `model`",
                    "a variant runs on its model's process; make a second model file instead",
                )


def _flag_problems(
    args: list[str], inherited: dict[str, flags.Flag], source: str
) -> Iterator[tuple[int, str, str]]:
    """(index, message, hint) for each flag halogen owns or that contradicts an earlier one."""
    seen = dict(inherited)
    for flag in flags.parse(args):
        earlier = seen.get(flag.name)
        if flag.name in flags.OWNED:
            yield flag.index, f"{flag.written} is written by halogen", flags.OWNED[flag.name]
        elif flag.name in inherited and inherited[flag.name].value == flag.value:
            # The same value again is still written twice into the command line.
            said = f"{earlier.written} {earlier.value or ''}".strip() if earlier else flag.written
            yield (
                flag.index,
                f"{said} is already set {source.replace('from ', 'by ', 1)}",
                "remove it here: the backend's args apply to every model that uses it",
            )
        elif flag.name and earlier is not None and earlier.value == flag.value:
            yield flag.index, f"{flag.written} is given twice in this list", "give each flag once"
        elif flag.name and earlier is not None and earlier.value != flag.value:
            where = source if flag.name in inherited else "earlier in the same list"
            said = f"{earlier.written} {earlier.value or ''}".strip()
            yield (
                flag.index,
                f"{flag.written} {flag.value or ''} contradicts {said} {where}".replace("  ", " "),
                "give each flag once: change the backend, or declare another backend for this model"
                if flag.name in inherited
                else "give each flag once",
            )
        seen.setdefault(flag.name, flag)


def _runs_llama_server(binary: str) -> bool:
    """The flag table is llama-server's: a backend may run another server (whisper-server)."""
    return PurePosixPath(binary).name == "llama-server"


def _flags(site: Site) -> Iterator[Diagnostic]:
    for backend_id, declared in site.spec.backends.items():
        for index, message, hint in (
            flags.refused(declared.args) if _runs_llama_server(declared.binary) else []
        ):
            yield site.doc.diagnostic(("backends", backend_id, "args", index), message, hint)
        for index, message, hint in _flag_problems(declared.args, {}, ""):
            yield site.doc.diagnostic(("backends", backend_id, "args", index), message, hint)
    for model_id in sorted(site.models):
        model = site.models[model_id]
        bid = backend_of(site, model)
        backend = site.spec.backends.get(bid or "")
        inherited = (
            {f.name: f for f in flags.parse(backend.args) if f.name}
            if backend and model.spec.cmd is None
            else {}
        )
        if backend is not None and _runs_llama_server(backend.binary):
            for index, message, hint in flags.refused(model.spec.args):
                yield model.doc.diagnostic(("args", index), message, hint)
        for index, message, hint in _flag_problems(model.spec.args, inherited, f"from backend {bid!r}"):
            yield model.doc.diagnostic(("args", index), message, hint)


def _deployment(site: Site) -> Iterator[Diagnostic]:
    d = site.spec.deployment
    swap = site.spec.llamaSwap
    least = image.shutdown_seconds(swap.unloadTimeout)
    if d.terminationGracePeriodSeconds < least:
        yield site.doc.diagnostic(
            ("deployment", "terminationGracePeriodSeconds"),
            f"{d.terminationGracePeriodSeconds}s leaves no time to stop llama-server: the preStop sleep "
            f"takes {image.PRESTOP_SECONDS}s, stopping the models up to {swap.unloadTimeout}s (unloadTimeout)",
            f"set it to at least {least}; what it holds beyond that, requests in flight get to finish",
        )
    if d.service.address and d.service.type != "LoadBalancer":
        yield site.doc.diagnostic(
            ("deployment", "service", "address"), "an address needs service type LoadBalancer"
        )
    if d.image.tag and d.image.digest:
        yield site.doc.diagnostic(("deployment", "image"), "give a tag or a digest, not both")
    if d.image.base != "custom":
        expected = image.LLAMA_SERVER[d.image.base]
        for backend_id, backend in site.spec.backends.items():
            if backend.binary != expected:
                yield site.doc.diagnostic(
                    ("backends", backend_id, "binary"),
                    f"{backend.binary} is not where a {d.image.base} image has llama-server ({expected})",
                    f"set binary to {expected}, or deployment.image.base to the image's kind; custom skips this check",
                )
    for key in ("hostPath", "mountPath"):
        if ".." in PurePosixPath(getattr(d.models, key)).parts:
            yield site.doc.diagnostic(
                ("deployment", "models", key),
                f"{getattr(d.models, key)} contains '..'",
                "Kubernetes refuses it: write the path without '..'",
            )
    mount = PurePosixPath(d.models.mountPath)
    if mount == PurePosixPath("/") or str(mount).startswith((image.CONFIG_DIR, "/tmp")):
        yield site.doc.diagnostic(
            ("deployment", "models", "mountPath"),
            f"{mount} collides with the config or scratch mounts",
            "use e.g. /models",
        )
    used = {backend_of(site, m) for m in site.models.values()}
    for backend_id, backend in site.spec.backends.items():
        gpu = [*backend.devices, *(r for r in backend.resources if r in GPU_RESOURCES)]
        # With the AMD device plugin, amd.com/gpu comes with device files the pod may open.
        plugin = d.devicePlugin == "amd" and not backend.devices and "amd.com/gpu" in backend.resources
        if backend_id in used and gpu and not backend.supplementalGroups and not plugin:
            key = "devices" if backend.devices else "resources"
            yield site.doc.diagnostic(
                ("backends", backend_id, key),
                f"the pod runs as uid {d.runAsUser}, which can open the GPU ({', '.join(gpu)}) only "
                "through the host groups that own its device files, and this backend gives none",
                "add their ids to supplementalGroups, as `getent group render video` prints them on the node"
                + (
                    ", or set deployment.devicePlugin: amd if the nodes run the AMD device plugin"
                    if "amd.com/gpu" in backend.resources
                    else ""
                ),
            )
    ports = range(swap.startPort, swap.startPort + len(site.models))
    if d.port in ports:
        yield site.doc.diagnostic(
            ("deployment", "port"),
            f"port {d.port} is inside the model port range {ports.start}-{ports.stop - 1}",
            "move llamaSwap.startPort",
        )
