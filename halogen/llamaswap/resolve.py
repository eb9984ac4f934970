"""From a `Config` to what runs: macros expanded, ports assigned, commands split, groups closed.

This is llama-swap's load-time semantics as a pure function. `halogen serve` runs its result;
`halogen build` runs it on what it is about to write, so every error llama-swap would raise at
load is caught before a file is written.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from halogen import patterns
from halogen.llamaswap import command, names
from halogen.llamaswap.config import (
    DEFAULT_GROUP,
    MIN_HEALTH_CHECK_TIMEOUT,
    Config,
    Group,
    MacroValue,
    Matrix,
    Model,
)
from halogen.llamaswap.matrix import MatrixErrors, compile_sets
from halogen.llamaswap.names import did_you_mean
from halogen.llamaswap.resolved import (
    DEFAULT_CONCURRENCY,
    DEFAULT_IGNORE_PATHS,
    RESERVED,
    STRATEGIES,
    FieldPath,
    MatrixRules,
    PeerRoute,
    Problem,
    ProfileRule,
    Resolved,
    Runnable,
    SelectorRule,
    Unresolvable,
    peer_fqn,
)

MACRO_NAME = re.compile(patterns.MACRO_NAME)
MACRO_REF = re.compile(r"\$\{([a-zA-Z0-9_.-]+)\}")
ENV_NAME_VALUE = re.compile(r"^[A-Z_][A-Z0-9_]*=.*$", re.DOTALL)


def url_problem(text: str) -> str | None:
    """Why `text` is not an http(s) URL with a host (None when it is one). `urlsplit` raises
    ValueError for a `[` left open, and `.port` for a port that is not 0-65535: both are input
    to report, never a crash."""
    try:
        url = urlsplit(text)
        url.port  # noqa: B018 - read for the ValueError it raises
    except ValueError as exc:
        return str(exc)
    if url.scheme not in ("http", "https"):
        return "the scheme must be http or https"
    if not url.hostname or any(c.isspace() for c in url.netloc):
        return "it names no host"
    return None


def check_macros(macros: Mapping[str, MacroValue], path: FieldPath) -> list[Problem]:
    problems = []
    for name, value in macros.items():
        where = (*path, name)
        if not MACRO_NAME.match(name):
            problems.append(
                Problem(
                    where,
                    f"macro name {name!r} is invalid",
                    "use letters, digits, '_' or '-', under 64 characters",
                )
            )
        elif name in RESERVED:
            problems.append(
                Problem(
                    where, f"macro name {name!r} is reserved", "PORT, MODEL_ID and PID are set by llama-swap"
                )
            )
        if isinstance(value, str):
            if f"${{{name}}}" in value:
                problems.append(Problem(where, f"macro {name!r} refers to itself"))
            if len(value) > 1024:
                problems.append(Problem(where, "macro value is longer than 1024 characters"))
    return problems


def _merged(config: Config, model_id: str, model: Model) -> list[tuple[str, MacroValue]]:
    merged: list[tuple[str, MacroValue]] = [("MODEL_ID", model_id), *config.macros.items()]
    for name, value in model.macros.items():
        for i, (existing, _) in enumerate(merged):
            if existing == name:
                merged[i] = (name, value)
                break
        else:
            merged.append((name, value))
    return merged


def _text(value: MacroValue) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def _substitute(value: Any, slug: str, macro: MacroValue) -> Any:
    """Replace one macro inside nested data; a string that is exactly the macro keeps its type."""
    if isinstance(value, str):
        return macro if value == slug else value.replace(slug, _text(macro))
    if isinstance(value, Mapping):
        return {k: _substitute(v, slug, macro) for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute(v, slug, macro) for v in value]
    return value


def _leftovers(value: Any) -> set[str]:
    if isinstance(value, str):
        return set(MACRO_REF.findall(value))
    if isinstance(value, Mapping):
        return set().union(*(_leftovers(v) for v in value.values())) if value else set()
    if isinstance(value, list):
        return set().union(*(_leftovers(v) for v in value)) if value else set()
    return set()


def expand(config: Config, model_id: str, model: Model) -> dict[str, Any]:
    """The fields llama-swap expands macros in, with every macro but ${PORT} (and ${PID}) expanded."""
    fields: dict[str, Any] = {
        "cmd": command.strip_comments(model.cmd),
        "cmdStop": command.strip_comments(model.cmdStop),
        "proxy": model.proxy,
        "checkEndpoint": model.checkEndpoint,
        "filters.stripParams": model.filters.stripParams,
        "name": model.name,
        "description": model.description,
        "aliases": list(model.aliases),
        "metadata": dict(model.metadata),
        # Its keys only: they take macros, ${MODEL_ID} above all (internal/config/macros.go).
        "filters.setParamsByID": list(model.filters.setParamsByID),
    }
    for name, value in reversed(_merged(config, model_id, model)):
        slug = f"${{{name}}}"
        fields = {k: _substitute(v, slug, value) for k, v in fields.items()}
    return fields


def resolve(config: Config) -> Resolved:
    """Apply llama-swap's load-time rules; raise `Unresolvable` with every problem found.

    The steps follow LoadConfigFromReader (internal/config/config.go, llama-swap): macros,
    routing and groups, each model's runnable, then the names that refer to models (preload,
    selectors, profiles) and the settings around them."""
    problems = check_macros(config.macros, ("macros",))
    router, groups, group_path, matrix, matrix_path, routing_problems = routing(config)
    problems += routing_problems
    member_of = _check_groups(config, groups, group_path, problems)
    groups = dict(groups)
    default_members = [m for m in sorted(config.models) if m not in member_of]
    if default_members and router == "group":
        groups[DEFAULT_GROUP] = Group(members=default_members)

    taken = _Taken(folded=_fold_ids(config, problems))
    models = _runnables(config, member_of, router, taken, problems)
    aliases = taken.aliases
    preload = _preload(config, aliases, problems)
    _check_api_keys(config, problems)
    rules = _matrix(config, matrix, matrix_path, problems) if matrix is not None else None
    priority = _priority(config, aliases, problems)
    peers, peer_problems = _peers(config, aliases)
    problems += peer_problems
    selectors = _selectors(config, aliases, peers, groups, rules, problems)
    profiles = _profiles(config, aliases, problems)
    ignore_paths = _ignore_paths(config, problems)
    if problems:
        raise Unresolvable(problems)
    return Resolved(
        models=models,
        groups=groups,
        aliases=aliases,
        preload=tuple(preload),
        api_keys=tuple(config.apiKeys),
        health_check_timeout=max(config.healthCheckTimeout, MIN_HEALTH_CHECK_TIMEOUT),
        log_level=config.logLevel,
        log_to_stdout=config.logToStdout,
        metrics_max=config.metricsMaxInMemory,
        include_aliases_in_list=config.includeAliasesInList,
        router=router,
        matrix=rules,
        priority=priority,
        selectors=selectors,
        profiles=profiles,
        upstream_ignore_paths=tuple(ignore_paths),
        peers=peers,
        peer_names=tuple(sorted({peer_fqn(r.peer, r.model) for r in peers.values()})),
        log_time_format=config.logTimeFormat,
    )


@dataclass
class _Taken:
    """The names given out so far: each alias -> its model, and each folded name -> its model."""

    folded: dict[str, str]
    aliases: dict[str, str] = field(default_factory=dict)


def _fold_ids(config: Config, problems: list[Problem]) -> dict[str, str]:
    """Each model id without `:latest` -> the id. A name and the same name with ":latest" are one
    name to `Resolved.lookup` and to the Ollama listing (which shows `a` as `a:latest`): they
    must not name two models."""
    folded: dict[str, str] = {}
    for model_id in sorted(config.models):
        key = names.fold(model_id)
        if key in folded:
            problems.append(
                Problem(
                    ("models", model_id),
                    f"model {model_id!r} and model {folded[key]!r} differ only by ':latest'",
                    "a request for either name would reach one of them: rename one",
                )
            )
        folded.setdefault(key, model_id)
    return folded


def _runnables(
    config: Config, member_of: Mapping[str, str], router: str, taken: _Taken, problems: list[Problem]
) -> dict[str, Runnable]:
    """Each model's runnable, in id order, `${PORT}` given out from `startPort` as it goes."""
    models: dict[str, Runnable] = {}
    next_port = config.startPort
    for model_id in sorted(config.models):
        model = config.models[model_id]
        base: FieldPath = ("models", model_id)
        problems += check_macros(model.macros, (*base, "macros"))
        fields = expand(config, model_id, model)
        if "${PORT}" in fields["cmd"]:
            fields = {k: _substitute(v, "${PORT}", next_port) for k, v in fields.items()}
            next_port += 1
        elif "${PORT}" in fields["proxy"]:
            problems.append(
                Problem(
                    (*base, "proxy"),
                    "proxy uses ${PORT} but cmd does not",
                    "${PORT} is assigned only to models whose cmd uses it",
                )
            )
            continue
        runnable = _runnable(config, model_id, fields, member_of, router, taken, problems)
        if runnable is not None:
            models[model_id] = runnable
    return models


def _runnable(
    config: Config,
    model_id: str,
    fields: dict[str, Any],
    member_of: Mapping[str, str],
    router: str,
    taken: _Taken,
    problems: list[Problem],
) -> Runnable | None:
    """One model's runnable from its expanded `fields`; None when it has a problem."""
    model = config.models[model_id]
    base: FieldPath = ("models", model_id)
    found = len(problems)
    _check_leftover_macros(fields, base, problems)
    if (why := url_problem(fields["proxy"])) is not None:
        problems.append(
            Problem((*base, "proxy"), f"invalid proxy URL {fields['proxy']!r}: {why}", "use http://host:port")
        )
    env = _env(model.env, base, problems)
    _claim_aliases(config, model_id, fields["aliases"], taken, problems)
    by_id, own_aliases = _claim_params_by_id(config, model_id, fields, taken, problems)
    bad = len(problems) > found
    try:
        argv = command.split(fields["cmd"])
        stop_argv = command.split(fields["cmdStop"]) if fields["cmdStop"].strip() else []
    except ValueError as exc:
        problems.append(Problem((*base, "cmd"), f"cannot split command: {exc}", "close every quote"))
        return None
    if not argv:
        problems.append(Problem((*base, "cmd"), "command is empty after removing comments"))
        return None
    if bad:
        return None
    ttl = config.globalTTL if model.ttl is None or model.ttl == -1 else model.ttl
    endpoint = fields["checkEndpoint"]
    return Runnable(
        id=model_id,
        argv=tuple(argv),
        stop_argv=tuple(stop_argv),
        proxy=fields["proxy"].rstrip("/"),
        check_endpoint="" if endpoint == "none" else endpoint,
        env=tuple(env),
        group=member_of.get(model_id, DEFAULT_GROUP) if router == "group" else "",
        aliases=tuple(own_aliases),
        unlisted=model.unlisted,
        ttl=ttl,
        unload_timeout=model.unloadTimeout or config.unloadTimeout or 10,
        use_model_name=model.useModelName,
        concurrency_limit=model.concurrencyLimit or DEFAULT_CONCURRENCY,
        strip_params=tuple(
            p.strip() for p in fields["filters.stripParams"].split(",") if p.strip() and p.strip() != "model"
        ),
        set_params={k: v for k, v in model.filters.setParams.items() if k != "model"},
        set_params_by_id={k: v for k, v in by_id.items() if v},
        send_loading_state=(
            config.sendLoadingState if model.sendLoadingState is None else model.sendLoadingState
        ),
        timeouts=model.timeouts,
        ignore_websockets=model.compat.ignoreWebsockets,
        capabilities=model.capabilities,
        name=fields["name"],
        description=fields["description"],
        metadata=fields["metadata"],
    )


def _check_leftover_macros(fields: Mapping[str, Any], base: FieldPath, problems: list[Problem]) -> None:
    """A `${name}` still in a field after expansion names no macro (`${PID}` is cmdStop's)."""
    for name, value in fields.items():
        for ref in sorted(_leftovers(value)):
            if ref == "PID" and name == "cmdStop":
                continue
            problems.append(
                Problem(
                    (*base, *name.split(".")),
                    f"unknown macro ${{{ref}}}",
                    "declare it under macros before the macros that use it",
                )
            )


def _env(entries: Iterable[str], base: FieldPath, problems: list[Problem]) -> list[tuple[str, str]]:
    """`NAME=value` entries as pairs; a malformed one is a problem."""
    env = []
    for i, entry in enumerate(entries):
        if not ENV_NAME_VALUE.match(entry) or "\n" in entry or "\x00" in entry:
            problems.append(
                Problem(
                    (*base, "env", i),
                    f"{entry!r} is not NAME=value",
                    "names are upper case letters, digits and '_'; values are one line",
                )
            )
        else:
            name, _, value = entry.partition("=")
            env.append((name, value))
    return env


def _claim_aliases(
    config: Config, model_id: str, aliases: Iterable[str], taken: _Taken, problems: list[Problem]
) -> None:
    """Give `model_id` its aliases; one another model has (or has but for `:latest`) is a problem."""
    base: FieldPath = ("models", model_id)
    for i, alias in enumerate(aliases):
        owner = taken.folded.get(names.fold(alias), model_id)
        if alias in taken.aliases or alias in config.models:
            other = taken.aliases.get(alias, alias)
            problems.append(
                Problem((*base, "aliases", i), f"alias {alias!r} is already used by model {other!r}")
            )
        elif owner != model_id:
            problems.append(
                Problem(
                    (*base, "aliases", i),
                    f"alias {alias!r} and a name of model {owner!r} differ only by ':latest'",
                    "':latest' is accepted on every name already: remove the alias or rename it",
                )
            )
        taken.aliases.setdefault(alias, model_id)
        taken.folded.setdefault(names.fold(alias), model_id)


def _claim_params_by_id(
    config: Config, model_id: str, fields: Mapping[str, Any], taken: _Taken, problems: list[Problem]
) -> tuple[dict[str, Mapping[str, Any]], list[str]]:
    """`filters.setParamsByID` by key, and the model's aliases with its keys added.

    Each key but the model's own id is an alias too, as internal/config/load.go (llama-swap)
    registers them; "model" is never set (ProtectedParams, filters.go)."""
    model = config.models[model_id]
    by_id: dict[str, Mapping[str, Any]] = {}
    own_aliases = list(fields["aliases"])
    where: FieldPath = ("models", model_id, "filters", "setParamsByID")
    for key, params in zip(
        fields["filters.setParamsByID"], model.filters.setParamsByID.values(), strict=True
    ):
        if key in by_id:
            problems.append(Problem((*where, key), f"two keys resolve to {key!r}"))
        by_id[key] = {k: v for k, v in params.items() if k != "model"}
        if key == model_id or key in own_aliases:
            continue
        owner = taken.folded.get(names.fold(key), model_id)
        if key in config.models or taken.aliases.get(key, model_id) != model_id or owner != model_id:
            other = taken.aliases.get(key, key if key in config.models else owner)
            problems.append(Problem((*where, key), f"key {key!r} is already used by model {other!r}"))
            continue
        taken.aliases[key] = model_id
        taken.folded.setdefault(names.fold(key), model_id)
        own_aliases.append(key)
    return by_id, own_aliases


def _preload(config: Config, aliases: Mapping[str, str], problems: list[Problem]) -> list[str]:
    """`hooks.on_startup.preload`: the model each name names, exactly as written."""
    preload = []
    for i, name in enumerate(config.hooks.on_startup.preload):
        name = name.strip()
        if not name:
            continue
        target = name if name in config.models else aliases.get(name)
        if target is None:
            # Exactly as written: llama-swap resolves a preload name without folding case or ':latest'.
            folded = {n.lower(): n for n in sorted([*config.models, *aliases], reverse=True)}
            near = folded.get(names.fold(name.lower()))
            problems.append(
                Problem(
                    ("hooks", "on_startup", "preload", i),
                    f"preload names {name!r}, which is no model id or alias",
                    f"preload names match exactly: write {near!r}"
                    if near
                    else did_you_mean(name, folded.values()),
                )
            )
        else:
            preload.append(target)
    return preload


def _check_api_keys(config: Config, problems: list[Problem]) -> None:
    for i, key in enumerate(config.apiKeys):
        if not key or any(c.isspace() for c in key):
            problems.append(Problem(("apiKeys", i), "API keys must be non-empty and contain no spaces"))


def _ignore_paths(config: Config, problems: list[Problem]) -> list[re.Pattern[str]]:
    """`upstream.ignorePaths` compiled (internal/config/upstream.go's default when unset)."""
    out = []
    for i, pattern in enumerate(config.upstream.ignorePaths or [DEFAULT_IGNORE_PATHS]):
        try:
            out.append(re.compile(pattern))
        except re.error as exc:
            problems.append(Problem(("upstream", "ignorePaths", i), f"not a regular expression: {exc}"))
    return out


def _peers(config: Config, aliases: Mapping[str, str]) -> tuple[dict[str, PeerRoute], list[Problem]]:
    """The names peers' models answer to, as NewPeer and ValidatePeerNamespace build them
    (internal/router/peer.go, internal/config/peer.go): `<peer>/<model>` always, the bare model
    name when exactly one peer offers it. A local id or alias wins over a bare name, and may
    not take a qualified one."""
    problems: list[Problem] = []
    qualified: dict[str, PeerRoute] = {}
    bare: dict[str, list[PeerRoute]] = {}
    for peer_id in sorted(config.peers):
        peer = config.peers[peer_id]
        where: FieldPath = ("peers", peer_id)
        if (why := url_problem(peer.proxy)) is not None:
            problems.append(
                Problem(
                    (*where, "proxy"),
                    f"invalid peer proxy URL {peer.proxy!r}: {why}",
                    "use http(s)://host:port",
                )
            )
            continue
        strip = tuple(
            p.strip() for p in peer.filters.stripParams.split(",") if p.strip() and p.strip() != "model"
        )
        for i, model in enumerate(dict.fromkeys(peer.models)):
            route = PeerRoute(
                peer=peer_id,
                model=model,
                proxy=peer.proxy.rstrip("/"),
                api_key=peer.apiKey,
                strip_params=strip,
                set_params={k: v for k, v in peer.filters.setParams.items() if k != "model"},
                timeouts=peer.timeouts,
            )
            fqn = peer_fqn(peer_id, model)
            if fqn in qualified:
                other = qualified[fqn]
                problems.append(
                    Problem(
                        (*where, "models", i),
                        f"peer model name {fqn!r} is ambiguous between peers.{other.peer} model "
                        f"{other.model!r} and peers.{peer_id} model {model!r}",
                    )
                )
            elif fqn in config.models or fqn in aliases:
                problems.append(
                    Problem((*where, "models", i), f"{fqn!r} is also a local model id or alias", "rename one")
                )
            qualified.setdefault(fqn, route)
            bare.setdefault(model, []).append(route)
    # The rest of ValidatePeerNamespace (internal/config/peer.go): no selector id or profile
    # pin may take a qualified name.
    for fqn in sorted(qualified):
        if fqn in config.selectors:
            problems.append(
                Problem(
                    ("selectors", fqn),
                    f"selector ID {fqn!r} conflicts with fully qualified peer model name",
                    "rename the selector",
                )
            )
        for pid, profile in config.profiles.items():
            if fqn in profile.pins:
                problems.append(
                    Problem(
                        ("profiles", pid, "pins", fqn),
                        f"profile {pid} pin {fqn!r} conflicts with fully qualified peer model name",
                    )
                )
    routes = dict(qualified)
    for name, offered in bare.items():
        if len(offered) == 1 and name not in qualified:
            routes[name] = offered[0]
    return routes, problems


def routing(
    config: Config,
) -> tuple[str, Mapping[str, Group], FieldPath, Matrix | None, FieldPath, list[Problem]]:
    """Which router runs, with its groups or matrix and where they were written. The legacy
    top-level `groups`/`matrix` and `routing.router` are two styles of one thing; a config uses
    one (`LoadConfigFromReader`, internal/config/load.go). `routing.scheduler` is no part of it."""
    problems: list[Problem] = []
    legacy = config.matrix is not None or bool(config.groups)
    router = config.routing.router
    settings = router.settings
    if legacy and (router.use != "" or settings.matrix is not None or bool(settings.groups)):
        problems.append(
            Problem(
                ("routing", "router"),
                "config uses both the legacy top-level 'matrix'/'groups' keys and the new 'routing.router' block",
                "move the top-level keys into routing.router and remove them",
            )
        )
    base: FieldPath = ("routing", "router", "settings")
    if legacy:
        if config.matrix is not None and config.groups:
            problems.append(
                Problem(("matrix",), "config cannot use both 'groups' and 'matrix'", "keep one of them")
            )
            return "group", config.groups, ("groups",), None, ("matrix",), problems
        if config.matrix is not None:
            return "matrix", {}, ("groups",), config.matrix, ("matrix",), problems
        return "group", config.groups, ("groups",), None, ("matrix",), problems
    if router.use == "matrix":
        if settings.matrix is None:
            problems.append(
                Problem(
                    ("routing", "router", "use"),
                    "routing.router.use is 'matrix' but routing.router.settings.matrix is not set",
                )
            )
            return "group", {}, (*base, "groups"), None, (*base, "matrix"), problems
        return "matrix", {}, (*base, "groups"), settings.matrix, (*base, "matrix"), problems
    if router.use not in ("group", ""):
        problems.append(
            Problem(
                ("routing", "router", "use"),
                f"routing.router.use: unknown router {router.use!r}",
                "use group or matrix",
            )
        )
    # A matrix beside `use: group` is not in use, so it is not checked (as llama-swap).
    return "group", settings.groups, (*base, "groups"), None, (*base, "matrix"), problems


def _check_groups(
    config: Config, groups: Mapping[str, Group], path: FieldPath, problems: list[Problem]
) -> dict[str, str]:
    """Each model's group; a member listed twice, in two groups, or not defined is a problem."""
    member_of: dict[str, str] = {}
    for gid, group in sorted(groups.items()):
        seen: set[str] = set()
        for i, member in enumerate(group.members):
            where: FieldPath = (*path, gid, "members", i)
            if member in seen:
                problems.append(Problem(where, f"model {member!r} is listed twice in group {gid!r}"))
            elif member in member_of:
                problems.append(
                    Problem(
                        where,
                        f"model {member!r} is in groups {member_of[member]!r} and {gid!r}",
                        "a model belongs to at most one group",
                    )
                )
            elif member not in config.models:
                problems.append(
                    Problem(
                        where,
                        f"group {gid!r} names model {member!r}, which is not defined",
                        did_you_mean(member, config.models),
                    )
                )
            seen.add(member)
            member_of.setdefault(member, gid)
    return member_of


VAR_KEY = re.compile(r"^[a-zA-Z0-9.-]{1,32}$")
"""What llama-swap's loader accepts as a matrix var (`varKeyPattern`, internal/config/matrix.go);
its JSON Schema is stricter (1-8 letters and digits), which is what halogen writes."""


def _matrix(config: Config, matrix: Matrix, path: FieldPath, problems: list[Problem]) -> MatrixRules | None:
    """`ValidateMatrix` (internal/config/matrix.go): vars name model ids (never aliases), evict
    costs are positive and name a var or a model, sets compile. A var shadows a model id."""
    found: list[Problem] = []
    for key, model in matrix.vars.items():
        where: FieldPath = (*path, "vars", key)
        if not VAR_KEY.match(key):
            found.append(
                Problem(
                    where,
                    f"var key {key!r} must contain only alphanumeric, '-' or '.' characters "
                    "and be 1-32 characters long",
                )
            )
        elif model not in config.models:
            found.append(
                Problem(
                    where,
                    f"var key {key!r} references unknown model {model!r}",
                    did_you_mean(model, config.models) or "vars name model ids, not aliases",
                )
            )

    def lookup(ident: str) -> str | None:
        if ident in matrix.vars:
            return matrix.vars[ident]
        return ident if ident in config.models else None

    for key, cost in matrix.evict_costs.items():
        where = (*path, "evict_costs", key)
        if cost <= 0:
            found.append(Problem(where, f"evict_cost for {key!r} must be a positive integer, got {cost}"))
        elif lookup(key) is None:
            found.append(
                Problem(
                    where,
                    f"evict_costs: unknown var or model {key!r}",
                    did_you_mean(key, config.models) or did_you_mean(key, matrix.vars),
                )
            )
    program = None
    try:
        program = compile_sets(matrix.sets, lookup)
    except MatrixErrors as exc:
        for error in exc.errors:
            hint = ""
            if error.ident and "undefined set" in error.message:
                hint = did_you_mean(error.ident, matrix.sets)
            elif error.ident:
                hint = did_you_mean(error.ident, config.models) or did_you_mean(error.ident, matrix.vars)
            found.append(
                Problem(
                    (*path, "sets", error.set_name) if error.set_name else (*path, "sets"),
                    error.message,
                    hint,
                )
            )
    problems += found
    if found or program is None:
        return None
    costs = {matrix.vars.get(key, key): cost for key, cost in matrix.evict_costs.items()}
    return MatrixRules(program, costs)


def _priority(config: Config, aliases: Mapping[str, str], problems: list[Problem]) -> dict[str, int]:
    scheduler = config.routing.scheduler
    if scheduler.use not in ("", "fifo"):
        problems.append(
            Problem(
                ("routing", "scheduler", "use"),
                f"routing.scheduler.use: unknown scheduler {scheduler.use!r}",
                "the one scheduler is fifo",
            )
        )
    priority: dict[str, int] = {}
    for key, value in scheduler.settings.fifo.priority.items():
        model = key if key in config.models else aliases.get(key)
        if model is None:
            problems.append(
                Problem(
                    ("routing", "scheduler", "settings", "fifo", "priority", key),
                    f"routing.scheduler.settings.fifo.priority references unknown model {key!r}",
                    did_you_mean(key, [*config.models, *aliases]),
                )
            )
        elif key == model or model not in priority:
            priority[model] = value
    return priority


def _selectors(
    config: Config,
    aliases: Mapping[str, str],
    peers: Mapping[str, PeerRoute],
    groups: Mapping[str, Group],
    matrix: MatrixRules | None,
    problems: list[Problem],
) -> dict[str, SelectorRule]:
    """`validateSelectors` (internal/config/selectors.go)."""
    rules: dict[str, SelectorRule] = {}
    names = [*config.models, *aliases]
    for sid, selector in config.selectors.items():
        where: FieldPath = ("selectors", sid)
        found: list[Problem] = []
        if not sid.strip():
            found.append(Problem(where, "selector names cannot be empty"))
        elif sid in config.models:
            found.append(Problem(where, f"name conflicts with model ID {sid!r}", "rename the selector"))
        elif sid in aliases:
            found.append(
                Problem(
                    where,
                    f"name conflicts with model alias {sid!r}",
                    f"an alias of {aliases[sid]!r}: rename the selector",
                )
            )
        if selector.strategy == "":
            found.append(Problem((*where, "strategy"), "strategy is required", "use warm, pin or spillover"))
        elif selector.strategy not in STRATEGIES:
            found.append(
                Problem(
                    (*where, "strategy"),
                    f"unknown strategy {selector.strategy!r}",
                    "use warm, pin or spillover",
                )
            )
        if not selector.targets:
            found.append(Problem((*where, "targets"), "targets must contain at least one entry"))
        models: list[str] = []
        remote: list[str] = []  # a peer's models among the targets, by `<peer>/<model>`
        for i, target in enumerate(selector.targets):
            model = target if target in config.models else aliases.get(target)
            peer = peers.get(target) if model is None else None
            if target in config.selectors:
                found.append(
                    Problem(
                        (*where, "targets", i),
                        f"references selector {target!r}; selector chaining is not supported",
                    )
                )
            elif model is None and peer is None:
                found.append(
                    Problem(
                        (*where, "targets", i),
                        f"references unknown model {target!r}",
                        did_you_mean(target, [*names, *peers]),
                    )
                )
            elif peer is not None and selector.strategy == "warm":
                # warm asks which target is loaded, which only a local model can say.
                found.append(
                    Problem(
                        (*where, "targets", i),
                        f'must resolve to a local model for strategy "warm": {target!r} is a peer\'s',
                        "use pin or spillover, or a local model",
                    )
                )
            elif peer is not None:
                models.append(peer_fqn(peer.peer, peer.model))
                remote.append(models[-1])
            elif model is not None:
                models.append(model)
        if selector.strategy == "spillover" and not found:
            if selector.settings.spillover < 1:
                found.append(Problem((*where, "settings", "spillover"), "settings.spillover must be >= 1"))
            seen: set[str] = set()
            for model in models:
                if model in seen:
                    found.append(
                        Problem((*where, "targets"), f"targets contains duplicate resolved model {model!r}")
                    )
                seen.add(model)
            if not found:
                local = [model for model in models if model not in remote]
                found += _spillover_together(sid, local, groups, matrix)
        problems += found
        if not found:
            rules[sid] = SelectorRule(
                id=sid,
                strategy=selector.strategy,
                targets=tuple(selector.targets),
                models=tuple(models),
                peers=frozenset(remote),
                spillover=selector.settings.spillover,
                name=selector.name,
                description=selector.description,
                unlisted=selector.unlisted,
                metadata=dict(selector.metadata),
            )
    return rules


def _spillover_together(
    sid: str, models: list[str], groups: Mapping[str, Group], matrix: MatrixRules | None
) -> list[Problem]:
    """Spillover targets must be able to run at once (`validateSpilloverCoexistence`)."""
    where: FieldPath = ("selectors", sid, "targets")
    if len(models) <= 1:
        return []
    if matrix is not None:
        if matrix.program.can_contain_all(models):
            return []
        return [Problem(where, "spillover targets must all appear together in one expanded matrix set")]
    group_of = {member: gid for gid, group in groups.items() for member in group.members}
    gid = group_of.get(models[0], "")
    if not gid:
        return [Problem(where, f"spillover target {models[0]!r} is not in a routing group")]
    if groups[gid].swap:
        return [Problem(where, "spillover targets must share a group with swap: false")]
    if any(group_of.get(m) != gid for m in models[1:]):
        return [Problem(where, "spillover targets must share one routing group")]
    return []


def _profiles(config: Config, aliases: Mapping[str, str], problems: list[Problem]) -> dict[str, ProfileRule]:
    """`validateProfiles` (internal/config/load.go): a pin names a model, an alias or a
    selector; null or "" disables its id."""
    rules: dict[str, ProfileRule] = {}
    names = [*config.models, *aliases, *config.selectors]
    for pid, profile in config.profiles.items():
        where: FieldPath = ("profiles", pid)
        found: list[Problem] = []
        if not pid.strip():
            found.append(Problem(where, "profile names cannot be empty"))
        if not profile.pins:
            found.append(Problem((*where, "pins"), "pins must contain at least one entry"))
        pins: dict[str, str] = {}
        for pin, target in profile.pins.items():
            if not pin.strip():
                found.append(Problem((*where, "pins", pin), "pin names cannot be empty"))
            elif (
                target
                and target not in config.models
                and target not in aliases
                and target not in config.selectors
            ):
                found.append(
                    Problem(
                        (*where, "pins", pin),
                        f"references unknown model {target!r}",
                        did_you_mean(target, names)
                        or "pin a model, an alias or a selector, or ~ to disable the id",
                    )
                )
            pins[pin] = target or ""
        problems += found
        if not found:
            rules[pid] = ProfileRule(pid, profile.description, pins)
    return rules
