"""From a `Config` to what runs: macros expanded, ports assigned, commands split, groups closed.

This is llama-swap's load-time semantics as a pure function, in the order LoadConfigFromReader
takes its steps. The steps with ideas of their own live beside it: `macros` (expansion),
`routing` (router, groups, matrix, priorities) and `selection` (selectors, profiles); here are
the models' ids, commands, ports, aliases, peers and the settings around them. `halogen serve` runs its result;
`halogen build` runs it on what it is about to write, so every error llama-swap would raise at
load is caught before a file is written.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from halogen.llamaswap import command, macros, names, routing, selection
from halogen.llamaswap.config import (
    DEFAULT_GROUP,
    MIN_HEALTH_CHECK_TIMEOUT,
    Config,
    Group,
)
from halogen.llamaswap.names import did_you_mean
from halogen.llamaswap.resolved import (
    DEFAULT_CONCURRENCY,
    DEFAULT_IGNORE_PATHS,
    FieldPath,
    PeerRoute,
    Problem,
    Resolved,
    Runnable,
    Unresolvable,
    peer_fqn,
)

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


def resolve(config: Config) -> Resolved:
    """Apply llama-swap's load-time rules; raise `Unresolvable` with every problem found.

    The steps follow LoadConfigFromReader (internal/config/config.go, llama-swap): macros,
    routing and groups, each model's runnable, then the names that refer to models (preload,
    selectors, profiles) and the settings around them."""
    problems = macros.check_macros(config.macros, ("macros",))
    router, groups, group_path, matrix, matrix_path, routing_problems = routing.declared(config)
    problems += routing_problems
    member_of = routing.check_groups(config, groups, group_path, problems)
    groups = dict(groups)
    default_members = [m for m in sorted(config.models) if m not in member_of]
    if default_members and router == "group":
        groups[DEFAULT_GROUP] = Group(members=default_members)

    taken = _Taken(folded=_fold_ids(config, problems))
    models = _runnables(config, member_of, router, taken, problems)
    aliases = taken.aliases
    preload = _preload(config, aliases, problems)
    _check_api_keys(config, problems)
    rules = routing.matrix_rules(config, matrix, matrix_path, problems) if matrix is not None else None
    priority = routing.priorities(config, aliases, problems)
    peers, peer_problems = _peers(config, aliases)
    problems += peer_problems
    selectors = selection.selector_rules(config, aliases, peers, groups, rules, problems)
    profiles = selection.profile_rules(config, aliases, problems)
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
        capture_mb=config.captureBuffer,
        store_path=config.store.path if config.store is not None else "",
        session_headers=tuple(config.ui.activity.session_id),
        performance_every=0.0 if config.performance.disabled else config.performance.seconds,
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
        problems += macros.check_macros(model.macros, (*base, "macros"))
        fields = macros.expand(config, model_id, model)
        if "${PORT}" in fields["cmd"]:
            fields = {k: macros.substitute(v, "${PORT}", next_port) for k, v in fields.items()}
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
    macros.check_leftover_macros(fields, base, problems)
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
