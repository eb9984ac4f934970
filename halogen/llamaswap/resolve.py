"""From a `Config` to what runs: macros expanded, ports assigned, commands split, groups closed.

This is llama-swap's load-time semantics as a pure function. `halogen serve` runs its result;
`halogen build` runs it on what it is about to write, so every error llama-swap would raise at
load is caught before a file is written.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from halogen import patterns
from halogen.llamaswap import command
from halogen.llamaswap.config import (
    DEFAULT_GROUP,
    MIN_HEALTH_CHECK_TIMEOUT,
    Config,
    Group,
    MacroValue,
    Model,
)

MACRO_NAME = re.compile(patterns.MACRO_NAME)
MACRO_REF = re.compile(r"\$\{([a-zA-Z0-9_.-]+)\}")
ENV_NAME_VALUE = re.compile(r"^[A-Z_][A-Z0-9_]*=.*$", re.DOTALL)
RESERVED = ("PORT", "MODEL_ID", "PID")
DEFAULT_CONCURRENCY = 10

FieldPath = tuple[str | int, ...]


@dataclass(frozen=True)
class Problem:
    path: FieldPath
    message: str
    hint: str = ""


class Unresolvable(Exception):
    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("; ".join(f"{'.'.join(map(str, p.path))}: {p.message}" for p in problems))


@dataclass(frozen=True)
class Runnable:
    """One model as `halogen serve` runs it."""

    id: str
    argv: tuple[str, ...]
    stop_argv: tuple[str, ...]  # may hold ${PID}; empty = signal the process group
    proxy: str
    check_endpoint: str  # "" = ready at spawn
    env: tuple[tuple[str, str], ...]
    group: str
    aliases: tuple[str, ...] = ()
    unlisted: bool = False
    ttl: int = 0  # seconds idle before unload; 0 = never
    unload_timeout: int = 10
    use_model_name: str = ""
    concurrency_limit: int = DEFAULT_CONCURRENCY
    strip_params: tuple[str, ...] = ()
    set_params: Mapping[str, Any] = field(default_factory=dict)
    # The requested id (the model's own or an alias) -> params set after `set_params`.
    set_params_by_id: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    send_loading_state: bool = False
    name: str = ""
    description: str = ""
    metadata: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Resolved:
    models: dict[str, Runnable]
    groups: dict[str, Group]  # the implicit (default) group included when it has members
    aliases: dict[str, str]
    preload: tuple[str, ...]
    api_keys: tuple[str, ...]
    health_check_timeout: int
    log_level: str
    log_to_stdout: str
    metrics_max: int
    include_aliases_in_list: bool

    def lookup(self, name: str) -> str | None:
        """The model id a request's `model` names: an id, an alias, or either with `:latest`."""
        for candidate in (name, name.removesuffix(":latest")):
            if candidate in self.models:
                return candidate
            if candidate in self.aliases:
                return self.aliases[candidate]
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


def _expand(config: Config, model_id: str, model: Model) -> dict[str, Any]:
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
    """Apply llama-swap's load-time rules; raise `Unresolvable` with every problem found."""
    problems = check_macros(config.macros, ("macros",))
    models: dict[str, Runnable] = {}
    aliases: dict[str, str] = {}
    member_of: dict[str, str] = {}
    groups = dict(config.groups)

    for gid, group in sorted(groups.items()):
        seen: set[str] = set()
        for i, member in enumerate(group.members):
            where: FieldPath = ("groups", gid, "members", i)
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
                problems.append(Problem(where, f"group {gid!r} names model {member!r}, which is not defined"))
            seen.add(member)
            member_of.setdefault(member, gid)

    default_members = [m for m in sorted(config.models) if m not in member_of]
    if default_members:
        groups[DEFAULT_GROUP] = Group(members=default_members)

    next_port = config.startPort
    for model_id in sorted(config.models):
        model = config.models[model_id]
        base: FieldPath = ("models", model_id)
        problems += check_macros(model.macros, (*base, "macros"))
        fields = _expand(config, model_id, model)
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
        bad = False
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
                bad = True
        proxy = urlsplit(fields["proxy"])
        if proxy.scheme not in ("http", "https") or not proxy.hostname:
            problems.append(
                Problem((*base, "proxy"), f"invalid proxy URL {fields['proxy']!r}", "use http://host:port")
            )
            bad = True
        env = []
        for i, entry in enumerate(model.env):
            if not ENV_NAME_VALUE.match(entry) or "\n" in entry or "\x00" in entry:
                problems.append(
                    Problem(
                        (*base, "env", i),
                        f"{entry!r} is not NAME=value",
                        "names are upper case letters, digits and '_'; values are one line",
                    )
                )
                bad = True
            else:
                name, _, value = entry.partition("=")
                env.append((name, value))
        for i, alias in enumerate(fields["aliases"]):
            if alias in aliases or alias in config.models:
                other = aliases.get(alias, alias)
                problems.append(
                    Problem((*base, "aliases", i), f"alias {alias!r} is already used by model {other!r}")
                )
                bad = True
            aliases.setdefault(alias, model_id)
        by_id: dict[str, Mapping[str, Any]] = {}
        own_aliases = list(fields["aliases"])
        where = (*base, "filters", "setParamsByID")
        # Each key but the model's own id is an alias too, as internal/config/load.go
        # (llama-swap) registers them; "model" is never set (ProtectedParams, filters.go).
        for key, params in zip(
            fields["filters.setParamsByID"], model.filters.setParamsByID.values(), strict=True
        ):
            if key in by_id:
                problems.append(Problem((*where, key), f"two keys resolve to {key!r}"))
                bad = True
            by_id[key] = {k: v for k, v in params.items() if k != "model"}
            if key == model_id or key in own_aliases:
                continue
            if key in config.models or aliases.get(key, model_id) != model_id:
                other = aliases.get(key, key)
                problems.append(Problem((*where, key), f"key {key!r} is already used by model {other!r}"))
                bad = True
                continue
            aliases[key] = model_id
            own_aliases.append(key)
        try:
            argv = command.split(fields["cmd"])
            stop_argv = command.split(fields["cmdStop"]) if fields["cmdStop"].strip() else []
        except ValueError as exc:
            problems.append(Problem((*base, "cmd"), f"cannot split command: {exc}", "close every quote"))
            continue
        if not argv:
            problems.append(Problem((*base, "cmd"), "command is empty after removing comments"))
            continue
        if bad:
            continue
        ttl = config.globalTTL if model.ttl is None or model.ttl == -1 else model.ttl
        endpoint = fields["checkEndpoint"]
        models[model_id] = Runnable(
            id=model_id,
            argv=tuple(argv),
            stop_argv=tuple(stop_argv),
            proxy=fields["proxy"].rstrip("/"),
            check_endpoint="" if endpoint == "none" else endpoint,
            env=tuple(env),
            group=member_of.get(model_id, DEFAULT_GROUP),
            aliases=tuple(own_aliases),
            unlisted=model.unlisted,
            ttl=ttl,
            unload_timeout=model.unloadTimeout or config.unloadTimeout or 10,
            use_model_name=model.useModelName,
            concurrency_limit=model.concurrencyLimit or DEFAULT_CONCURRENCY,
            strip_params=tuple(
                p.strip()
                for p in fields["filters.stripParams"].split(",")
                if p.strip() and p.strip() != "model"
            ),
            set_params={k: v for k, v in model.filters.setParams.items() if k != "model"},
            set_params_by_id={k: v for k, v in by_id.items() if v},
            send_loading_state=(
                config.sendLoadingState if model.sendLoadingState is None else model.sendLoadingState
            ),
            name=fields["name"],
            description=fields["description"],
            metadata=fields["metadata"],
        )

    preload = []
    for i, name in enumerate(config.hooks.on_startup.preload):
        name = name.strip()
        if not name:
            continue
        target = name if name in config.models else aliases.get(name)
        if target is None:
            problems.append(
                Problem(
                    ("hooks", "on_startup", "preload", i),
                    f"preload names {name!r}, which is no model or alias",
                )
            )
        else:
            preload.append(target)
    for i, key in enumerate(config.apiKeys):
        if not key or any(c.isspace() for c in key):
            problems.append(Problem(("apiKeys", i), "API keys must be non-empty and contain no spaces"))
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
    )
