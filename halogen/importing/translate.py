"""A llama-swap config as halogen's site files: data to data, every decision noted.

A model whose command starts with a macro that runs a server on `--port ${PORT}` becomes
`file`, `contextSize` and `args` on a backend made of that macro; any other keeps its command
as a raw `cmd`. Macros are expanded as llama-swap expands them (the resolver's own expansion),
so what each model runs stays what it ran.

llama-swap's rules, as of 0bdb3720: macros expand per model, model macros over global ones
(internal/config/macros.go); `setParamsByID` keys are ids the model answers to
(internal/config/filters.go); routing is the legacy `groups`/`matrix` or `routing.router`, and
the scheduler's `priority` names models or aliases (internal/config/load.go, scheduling.go)."""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

from halogen import image, yamlio
from halogen.compiler.site import flags
from halogen.compiler.site.inputs import K8S_NAME, MODEL_ID, Globals
from halogen.importing import backends
from halogen.importing.kube import Manifests
from halogen.importing.notes import Note, at
from halogen.llamaswap import (
    command,
    routing,  # llama-swap's router choice
)
from halogen.llamaswap import matrix as dsl
from halogen.llamaswap.config import Capabilities, Compat, Config, Model, Timeouts
from halogen.llamaswap.macros import expand  # llama-swap's expansion
from halogen.patterns import BACKEND_ID

ENV_REF = re.compile(r"\$\{env\.([a-zA-Z_][a-zA-Z0-9_]*)\}")
DEFAULT_PROXY = "http://localhost:${PORT}"
LOOPBACK = ("127.0.0.1", "localhost", "::1")
SECRET_SUFFIX = "-keys"


@dataclass
class Draft:
    """The site to write, what was noted, and each model's intended differences from before."""

    site: dict[str, Any]
    models: dict[str, dict[str, Any]]
    notes: list[Note]
    raw: dict[str, Any]
    origin: dict[str, str] = field(default_factory=dict)  # model id -> where it was written
    intended: dict[str, dict[str, str]] = field(default_factory=dict)  # id -> compared key -> why


class Translation:
    def __init__(self, config: Config, doc: yamlio.Document, manifests: Manifests | None) -> None:
        self.config = config
        self.doc = doc
        self.manifests = manifests
        self.notes: list[Note] = []
        self.raw: dict[str, Any] = {}
        self.models: dict[str, dict[str, Any]] = {}
        self.origin: dict[str, str] = {}
        self.intended: dict[str, dict[str, str]] = {}
        self.launchers = {n: launch for n, v in config.macros.items() if (launch := backends.launcher(n, v))}
        self.split: dict[str, tuple[backends.Launcher, list[str]]] = {}  # id -> its launcher, its args
        self.used_macros: Counter[str] = Counter()

    def note(self, kind: Any, path: yamlio.Path_, message: str) -> None:
        self.notes.append(Note(kind, at(self.doc, path), message))

    def keep(self, path: yamlio.Path_, value: Any) -> None:
        node = self.raw
        for part in path[:-1]:
            node = node.setdefault(str(part), {})
        node[str(path[-1])] = value

    # --- models ---------------------------------------------------------------------------

    def model(self, mid: str, model: Model) -> None:
        where: yamlio.Path_ = ("models", mid)
        if not MODEL_ID.match(mid):
            self.note(
                "refused",
                where,
                f"model id {mid!r} cannot be a file name in models.d/: rename it, then import again",
            )
            self.keep(where, model.model_dump(mode="json", exclude_defaults=True))
            return
        fields = expand(self.config, mid, model)
        for name in model.macros:
            self.note(
                "changed", (*where, "macros", name), f"model macro {name!r} is written out where it was used"
            )
        cmd: str = fields["cmd"]
        if (ref := ENV_REF.search(cmd)) is not None:
            self.note(
                "refused",
                (*where, "cmd"),
                f"the command uses ${{env.{ref.group(1)}}}, which the pod does not set: write the value, then import again",
            )
            self.keep(where, model.model_dump(mode="json", exclude_defaults=True))
            return
        try:
            tokens = command.split(cmd)
            written = command.split(model.cmd)
        except ValueError:
            self.note(
                "refused", (*where, "cmd"), "the command has an unbalanced quote (llama-swap refuses it too)"
            )
            self.keep(where, model.model_dump(mode="json", exclude_defaults=True))
            return
        entry: dict[str, Any] = {}
        for key in ("name", "description"):
            if fields[key]:
                entry[key] = fields[key]
        first = backends.MACRO_ONLY.match(written[0]) if written else None
        launch = self.launchers.get(first.group(1)) if first and first.group(1) not in model.macros else None
        if (
            launch is not None
            and tuple(tokens[: len(launch.tokens)]) == launch.tokens
            and self._split(mid, entry, launch, tokens[len(launch.tokens) :])
        ):
            self.used_macros[launch.macro] += 1
        else:
            entry["cmd"] = cmd if cmd.endswith("\n") else cmd + "\n"
            self.note("kept", (*where, "cmd"), self._why_raw(written, launch))
        if fields["cmdStop"]:
            entry["cmdStop"] = fields["cmdStop"]
        env = dict(e.partition("=")[::2] for e in model.env)
        if env:
            entry["env"] = env
        if fields["aliases"]:
            entry["aliases"] = list(fields["aliases"])
        if model.unlisted:
            entry["unlisted"] = True
        if model.ttl is not None and model.ttl >= 0:
            entry["ttl"] = model.ttl
        for key in ("useModelName", "sendLoadingState"):
            value = getattr(model, key)
            if value not in ("", None):
                entry[key] = value
        if model.concurrencyLimit:
            entry["concurrencyLimit"] = model.concurrencyLimit
        if fields["checkEndpoint"] != "/health":
            entry["checkEndpoint"] = fields["checkEndpoint"]
        self._filters(mid, model, fields, entry)
        self._metadata(mid, fields["metadata"], entry)
        carried: dict[str, Any] = {}
        if fields["proxy"] != DEFAULT_PROXY:
            carried["proxy"] = fields["proxy"]
        if model.unloadTimeout:
            carried["unloadTimeout"] = model.unloadTimeout
        for key, default in (
            ("timeouts", Timeouts()),
            ("compat", Compat()),
            ("capabilities", Capabilities()),
        ):
            value = getattr(model, key)
            if value != default:
                carried[key] = value.model_dump(mode="json", exclude_defaults=True, by_alias=True)
        if carried:
            entry["llamaSwap"] = {**entry.get("llamaSwap", {}), **carried}
        self.models[mid] = entry
        self.origin[mid] = at(self.doc, where)

    def _why_raw(self, written: list[str], launch: backends.Launcher | None) -> str:
        head = written[0] if written else ""
        if launch is not None:
            return (
                f"kept as a raw `cmd`: after {head} it does not name one `-m` file and a literal `--ctx-size` "
                "(or it sets --port or --host itself)"
            )
        if backends.MACRO_ONLY.match(head):
            return f"kept as a raw `cmd`: macro {head} does not start a server on --port ${{PORT}} with literal flags"
        return "kept as a raw `cmd`: it starts with no macro, so there is no backend to share"

    def _split(self, mid: str, entry: dict[str, Any], launch: backends.Launcher, rest: list[str]) -> bool:
        parsed = flags.parse(rest)
        models = [f for f in parsed if f.name == "--model"]
        contexts = [f for f in parsed if f.name == "--ctx-size"]
        if (
            len(models) != 1
            or not models[0].value
            or len(contexts) > 1
            or (contexts and not (contexts[0].value or "").isdigit())
            or any(f.name in ("--port", "--host") for f in parsed)
            or any("${" in t for t in rest)
        ):
            return False
        args, twice = backends.last_wins(backends.drop(rest, models + contexts))
        if twice:
            self.note(
                "fixed",
                ("models", mid, "cmd"),
                f"{', '.join(twice)} given more than once (llama-server kept the last): given once now",
            )
        entry["file"] = models[0].value
        if contexts and int(contexts[0].value or "0") > 0:
            entry["contextSize"] = int(contexts[0].value or "0")
        self.split[mid] = (launch, args)
        return True

    def _filters(self, mid: str, model: Model, fields: dict[str, Any], entry: dict[str, Any]) -> None:
        strip = [p.strip() for p in fields["filters.stripParams"].split(",") if p.strip()]
        params = dict(model.filters.setParams)
        variants: dict[str, Any] = {}
        for key, (_, by_id) in zip(
            fields["filters.setParamsByID"], model.filters.setParamsByID.items(), strict=True
        ):
            path: yamlio.Path_ = ("models", mid, "filters", "setParamsByID", key)
            if key == mid:
                params.update(by_id)
                if model.aliases:
                    self.note(
                        "changed",
                        path,
                        "the params set for the model's own id are its setParams now: they apply also when "
                        "a request names it by an alias",
                    )
                    self.intended.setdefault(mid, {})["set params"] = "setParamsByID of the model's own id"
                    self.intended[mid]["params by id"] = "setParamsByID of the model's own id"
            elif key.startswith(f"{mid}:") and re.fullmatch(r"[A-Za-z0-9._-]{1,64}", key[len(mid) + 1 :]):
                variants[key[len(mid) + 1 :]] = dict(by_id)
            else:
                self.note("not carried", path, f"params for {key!r}, an id that is not `{mid}:<variant>`")
                self.keep(path, by_id)
        if strip or params:
            entry["filters"] = {k: v for k, v in (("stripParams", strip), ("setParams", params)) if v}
        if variants:
            entry["variants"] = variants

    def _metadata(self, mid: str, metadata: dict[str, Any], entry: dict[str, Any]) -> None:
        known: dict[str, Any] = {}
        extra: dict[str, Any] = {}
        for key, value in metadata.items():
            if (
                key in ("architecture", "family", "parameterSize", "quantizationLevel")
                and isinstance(value, str)
                and "\n" not in value
            ) or (
                key == "contextLength"
                and isinstance(value, int)
                and not isinstance(value, bool)
                and value > 0
            ):
                known[key] = value
            elif (
                key == "capabilities"
                and isinstance(value, list)
                and set(value) <= {"completion", "tools", "insert", "vision", "embedding", "thinking"}
            ):
                entry["capabilities"] = list(value)
            else:
                extra[key] = value
        if known:
            entry["metadata"] = known
        if extra:
            entry["llamaSwap"] = {"metadata": extra}

    # --- backends -------------------------------------------------------------------------

    def declare_backends(self) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        ids: dict[str, str] = {}
        for macro in sorted({launch.macro for launch, _ in self.split.values()}):
            bid = macro.lower().replace(".", "-")
            if not re.match(BACKEND_ID, bid) or bid in ids.values():
                bid = f"backend-{len(ids) + 1}"
            ids[macro] = bid
        for macro, bid in ids.items():
            launch = self.launchers[macro]
            users = sorted(m for m, (used, _) in self.split.items() if used.macro == macro)
            out[bid] = self._backend(launch, bid, users)
            self.note(
                "changed",
                ("macros", macro),
                f"macro {macro!r} is backend {bid!r}, used by {len(users)} model(s)",
            )
        return out

    def _backend(self, launch: backends.Launcher, bid: str, users: list[str]) -> dict[str, Any]:
        base, twice = backends.last_wins(list(launch.args))
        if twice:
            self.note(
                "fixed", ("macros", launch.macro), f"{', '.join(twice)} given more than once: given once now"
            )
        folded = backends.fold(base, {mid: self.split[mid][1] for mid in users})
        base = folded.args
        for mid in users:
            self.split[mid] = (launch, folded.models[mid])
        for written, spelled in folded.once:
            self.note(
                "fixed",
                ("macros", launch.macro),
                f"macro {launch.macro!r} sets {written}, and every model using it overrode that with "
                f"{spelled}: backend {bid!r} says {spelled} once",
            )
        backend: dict[str, Any] = {"binary": launch.binary}
        host = launch.host or "127.0.0.1"
        proxies = {self.models[m].get("llamaSwap", {}).get("proxy", DEFAULT_PROXY) for m in users}
        if host not in LOOPBACK and proxies == {DEFAULT_PROXY}:
            self.note(
                "fixed",
                ("macros", launch.macro),
                f"llama-server listened on {host}, open to the network, though only the proxy talks to it: "
                "it binds 127.0.0.1 now",
            )
            for mid in users:
                self.intended.setdefault(mid, {})["flag --host"] = f"llama-server binds 127.0.0.1, not {host}"
        elif host != "127.0.0.1":
            backend["host"] = host
        if base:
            backend["args"] = base
        shared = backends.shared_env([self.models[m].get("env", {}) for m in users])
        if shared:
            backend["env"] = shared
            for mid in users:
                env = {k: v for k, v in self.models[mid]["env"].items() if k not in shared}
                if env:
                    self.models[mid]["env"] = env
                else:
                    del self.models[mid]["env"]
            if len(users) > 1:
                self.note(
                    "fixed",
                    ("macros", launch.macro),
                    f"{', '.join(f'{k}={v}' for k, v in shared.items())} was repeated in every model using "
                    f"{launch.macro!r}: backend {bid!r} sets it once",
                )
        for mid in users:
            args = self.split[mid][1]
            entry = self.models[mid]
            entry["backend"] = bid
            if args:
                entry["args"] = args
        return backend

    # --- the site -------------------------------------------------------------------------

    def routing(self, site: dict[str, Any]) -> None:
        config = self.config
        router, groups, gpath, matrix, mpath, problems = routing.declared(config)
        for problem in problems:
            self.note("refused", problem.path, f"{problem.message} (llama-swap refuses it too)")
        if router == "group":
            declared: dict[str, Any] = {}
            for gid, group in groups.items():
                members = []
                for i, member in enumerate(group.members):
                    if member not in self.models:
                        why = "no model" if member not in config.models else "a model left out"
                        self.note(
                            "refused", (*gpath, gid, "members", i), f"group {gid!r} names {member!r}, {why}"
                        )
                    elif "group" in self.models[member]:
                        self.note(
                            "refused",
                            (*gpath, gid, "members", i),
                            f"{member!r} is already in group {self.models[member]['group']!r}",
                        )
                    else:
                        members.append(member)
                if not members:
                    self.note(
                        "not carried", (*gpath, gid), f"group {gid!r} has no members to run: it is left out"
                    )
                    continue
                declared[gid] = {
                    "swap": group.swap,
                    "exclusive": group.exclusive,
                    "persistent": group.persistent,
                }
                for member in members:
                    self.models[member]["group"] = gid
            if declared:
                site["groups"] = declared
            unused = config.routing.router.settings.matrix
            if unused is not None:
                self.note(
                    "not carried", (*gpath[:-1], "matrix"), "a matrix beside `use: group` is not in use"
                )
                self.keep((*gpath[:-1], "matrix"), unused.model_dump(mode="json", exclude_defaults=True))
        elif matrix is not None:
            names = dict(matrix.vars)
            site["matrix"] = {"sets": {k: dsl.rename(v, names) for k, v in matrix.sets.items()}}
            if matrix.evict_costs:
                site["matrix"]["evictCosts"] = {names.get(k, k): v for k, v in matrix.evict_costs.items()}
            if names:
                self.note(
                    "changed", (*mpath, "vars"), "the matrix names models by id; halogen writes the vars"
                )
        if config.routing.scheduler.use not in ("", "fifo"):
            self.note(
                "refused",
                ("routing", "scheduler", "use"),
                f"scheduler {config.routing.scheduler.use!r}: the one scheduler is fifo (llama-swap refuses it too)",
            )
        priority = config.routing.scheduler.settings.fifo.priority
        aliases = {a: mid for mid, m in config.models.items() for a in m.aliases}
        for key, value in priority.items():
            mid = key if key in config.models else aliases.get(key)
            path = ("routing", "scheduler", "settings", "fifo", "priority", key)
            if mid is None or mid not in self.models:
                self.note("refused", path, f"priority for {key!r}, which is no model imported")
            else:
                self.models[mid]["priority"] = value

    def globals(self, site: dict[str, Any]) -> None:
        config = self.config
        defaults = Globals()
        swap: dict[str, Any] = {}
        for key in (
            "healthCheckTimeout",
            "globalTTL",
            "unloadTimeout",
            "startPort",
            "logLevel",
            "logToStdout",
            "metricsMaxInMemory",
            "includeAliasesInList",
            "sendLoadingState",
            "logTimeFormat",
            "captureBuffer",
            "ui",
            "performance",
        ):
            value = getattr(config, key)
            if value != getattr(defaults, key):
                swap[key] = value.model_dump(mode="json") if hasattr(value, "model_dump") else value
        if config.healthCheckTimeout < 15:
            swap["healthCheckTimeout"] = 15
            self.note(
                "changed",
                ("healthCheckTimeout",),
                "llama-swap raises a healthCheckTimeout under 15 to 15: written as 15",
            )
        if not 1024 <= config.startPort <= 65000:
            swap.pop("startPort", None)
            self.note(
                "changed",
                ("startPort",),
                f"startPort {config.startPort} is outside 1024-65000, where the site's model ports go: "
                f"the models take ports from {defaults.startPort}",
            )
        if config.unloadTimeout < 1:
            swap["unloadTimeout"] = 1
            self.note(
                "changed", ("unloadTimeout",), "unloadTimeout 0 is 1 s in the site (the least it takes)"
            )
        if config.upstream.ignorePaths is not None:
            swap["upstream"] = {"ignorePaths": list(config.upstream.ignorePaths)}
        preload = [p.strip() for p in config.hooks.on_startup.preload if p.strip()]
        if preload:
            swap["preload"] = preload
        if swap:
            site["llamaSwap"] = swap
        for key in ("selectors", "profiles"):
            section = getattr(config, key)
            if section:
                site[key] = {k: v.model_dump(mode="json", exclude_defaults=True) for k, v in section.items()}

    def secret(self, site: dict[str, Any], written: str, path: yamlio.Path_, env: str) -> dict[str, str]:
        """A key as a reference to the site's Secret; a literal key is reported, never written."""
        name = f"{site['deployment']['name']}{SECRET_SUFFIX}"[:253]
        found = ENV_REF.fullmatch(written)
        if found is not None:
            env = found.group(1)
        else:
            self.note(
                "secret",
                path,
                f"a literal key is in the config: it is not written to the site. Put it in Secret {name!r} "
                f"under key {env}: kubectl create secret generic {name} --from-literal={env}=<the key> "
                "(one --from-literal per key), and take it out of the old config's history",
            )
        return {"secret": name, "key": env, "env": env}

    def peers_and_keys(self, site: dict[str, Any]) -> None:
        peers: dict[str, Any] = {}
        for pid, peer in self.config.peers.items():
            path: yamlio.Path_ = ("peers", pid)
            entry: dict[str, Any] = {"proxy": peer.proxy, "models": list(peer.models)}
            if peer.apiKey:
                env = "PEER_" + re.sub(r"[^A-Z0-9]", "_", pid.upper()) + "_API_KEY"
                entry["apiKey"] = self.secret(site, peer.apiKey, (*path, "apiKey"), env)
            filters: dict[str, Any] = {}
            strip = [p.strip() for p in peer.filters.stripParams.split(",") if p.strip()]
            if strip:
                filters["stripParams"] = strip
            if peer.filters.setParams:
                filters["setParams"] = dict(peer.filters.setParams)
            if filters:
                entry["filters"] = filters
            timeouts = peer.timeouts.model_dump(exclude_defaults=True)
            kept = {k: timeouts.pop(k) for k in ("connect", "responseHeader") if k in timeouts}
            if kept:
                entry["timeouts"] = kept
            if timeouts:
                self.note(
                    "not carried",
                    (*path, "timeouts"),
                    f"peer timeouts {', '.join(timeouts)}: halogen's peers take connect and responseHeader",
                )
                self.keep((*path, "timeouts"), timeouts)
            peers[pid] = entry
        if peers:
            site["peers"] = peers
        keys = [
            self.secret(site, k, ("apiKeys", i), f"LLAMA_SWAP_API_KEY_{i + 1}")
            for i, k in enumerate(self.config.apiKeys)
        ]
        if keys:
            site["apiKeys"] = keys

    def deployment(self, name: str) -> dict[str, Any]:
        found = self.manifests.deployment if self.manifests else {}
        deployment: dict[str, Any] = {
            "name": _k8s_name(found.get("name", name)),
            "namespace": found.get("namespace", "default"),
        }
        deployment.update({k: v for k, v in found.items() if k not in deployment})
        paths = [PurePosixPath(e["file"]) for e in self.models.values() if "file" in e]
        paths += [
            PurePosixPath(p)
            for e in self.models.values()
            if "cmd" in e
            for p in backends.model_paths(e["cmd"])
        ]
        absolute = [p for p in paths if p.is_absolute()]
        mounts = self.manifests.mounts if self.manifests else {}
        if mounts:
            mount = max(sorted(mounts), key=lambda m: sum(PurePosixPath(m) in p.parents for p in absolute))
            host = mounts[mount]
        else:
            parents = [str(p.parent) for p in absolute]
            common = _common(parents) if parents else image.MODELS_DIR
            mount = common if common != "/" else image.MODELS_DIR
            host = mount
            self.note(
                "changed",
                (),
                f"the models mount is {mount}, and the node's folder (hostPath) is taken to be the same: "
                "set deployment.models.hostPath to where the models are on the node (or import with --manifests)",
            )
        deployment["models"] = {"hostPath": host, "mountPath": mount}
        for mid, entry in self.models.items():
            if "file" not in entry:
                continue
            path = PurePosixPath(entry["file"])
            if path.is_absolute() and PurePosixPath(mount) in path.parents:
                entry["file"] = str(path.relative_to(mount))
            elif not path.is_absolute():
                self.note(
                    "changed",
                    ("models", mid, "cmd"),
                    f"{path} was read relative to llama-swap's working folder; it is {mount}/{path} now: put it there",
                )
                self.intended.setdefault(mid, {})["flag --model"] = (
                    f"the file is under the models mount {mount}"
                )
        binaries = {self.launchers[m].binary for m in self.used_macros}
        kinds = [k for k, path in image.LLAMA_SERVER.items() if binaries <= {path}]
        if binaries and not kinds:
            deployment["image"] = {"base": "custom"}
            self.note(
                "changed",
                (),
                f"the backends run {', '.join(sorted(binaries))}, where halogen's image has no llama-server: "
                "image.base is custom; build an image that has them, and set deployment.image",
            )
        elif kinds and kinds[0] != "rocm":
            deployment["image"] = {"base": kinds[0]}
        return deployment

    def plain_backend(self, declared: dict[str, dict[str, Any]]) -> None:
        """Raw commands take their environment from their backend: give them one that adds none."""
        raw = [mid for mid, e in self.models.items() if "cmd" in e]
        if not raw:
            return
        plain = next((b for b, v in declared.items() if not v.get("env")), None)
        if plain is None:
            plain = "plain" if "plain" not in declared else "plain-raw"
            declared[plain] = {}
        if len(declared) > 1:
            for mid in raw:
                self.models[mid]["backend"] = plain


def _k8s_name(name: str) -> str:
    cleaned = re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-")[:52].strip("-")
    return cleaned if re.match(K8S_NAME, cleaned) else "llama-swap"


def _common(paths: list[str]) -> str:
    import posixpath

    return posixpath.commonpath(paths)


def translate(config: Config, doc: yamlio.Document, manifests: Manifests | None, name: str) -> Draft:
    """The site for `config`: halogen.yaml's data, each model file's, and the notes."""
    t = Translation(config, doc, manifests)
    for mid, model in config.models.items():
        t.model(mid, model)
    declared = t.declare_backends()
    t.plain_backend(declared)
    site: dict[str, Any] = {"deployment": t.deployment(name)}
    t.globals(site)
    t.routing(site)
    t.peers_and_keys(site)
    site["backends"] = declared or {"llama-server": {}}
    texts = [m.model_dump_json() for m in config.models.values()] + [str(v) for v in config.macros.values()]
    for macro, value in config.macros.items():
        if macro in t.used_macros:
            continue
        if any(f"${{{macro}}}" in text for text in texts):
            t.note("changed", ("macros", macro), f"macro {macro!r} is written out where the models used it")
        else:
            t.note("not carried", ("macros", macro), f"macro {macro!r} is used by no model")
            t.keep(("macros", macro), value)
    notes = (manifests.notes if manifests else []) + t.notes
    return Draft(site, t.models, notes, t.raw, t.origin, t.intended)
