"""A llama-swap command line read for its backend: the macro that starts the server, the flags
each model adds, and the one place each flag is said. Pure: token lists in, token lists out.

A flag given twice takes its last value in llama-server (common/arg.cpp in llama.cpp parses
the arguments in order, each one setting its field), which is what makes folding safe."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from halogen.compiler.site import flags
from halogen.llamaswap import command
from halogen.patterns import ENV_NAME

MACRO_ONLY = re.compile(r"^\$\{([a-zA-Z0-9_-]+)\}$")


@dataclass(frozen=True)
class Launcher:
    """A macro that starts a server on the proxy's port: the makings of a backend."""

    macro: str
    tokens: tuple[str, ...]  # the macro's value, split
    binary: str
    host: str | None
    args: tuple[str, ...]


def drop(tokens: list[str], dropped: list[flags.Flag]) -> list[str]:
    """`tokens` without the given flags and the values they took."""
    gone: set[int] = set()
    for flag in dropped:
        gone.add(flag.index)
        if (
            flag.value is not None
            and flag.written
            and flag.index + 1 < len(tokens)
            and "=" not in tokens[flag.index]
        ):
            gone.add(flag.index + 1)
    return [t for i, t in enumerate(tokens) if i not in gone]


def launcher(name: str, value: object) -> Launcher | None:
    if not isinstance(value, str):
        return None
    try:
        tokens = command.split(value)
    except ValueError:
        return None
    if not tokens or not tokens[0].startswith("/") or "${" in tokens[0]:
        return None
    parsed = flags.parse(tokens[1:])
    ports = [f for f in parsed if f.name == "--port"]
    hosts = [f for f in parsed if f.name == "--host"]
    if (
        len(ports) != 1
        or ports[0].value != "${PORT}"
        or len(hosts) > 1
        or any(h.value is None for h in hosts)
    ):
        return None
    rest = drop(list(tokens[1:]), ports + hosts)
    if any("${" in t for t in rest) or any(f.name in ("--model", "--ctx-size") for f in flags.parse(rest)):
        return None
    return Launcher(name, tuple(tokens), tokens[0], hosts[0].value if hosts else None, tuple(rest))


def last_wins(args: list[str]) -> tuple[list[str], list[str]]:
    """`args` with each flag given once, at its last value (llama-server keeps the last), and
    the flags that were given more than once."""
    parsed = flags.parse(args)
    last = {f.name: f.index for f in parsed if f.name}
    twice = sorted({f.written for f in parsed if f.name and last[f.name] != f.index})
    return drop(args, [f for f in parsed if f.name and last[f.name] != f.index]), twice


def values(args: list[str]) -> dict[str, str | None]:
    return {f.name: f.value for f in flags.parse(args) if f.name}


@dataclass
class Folded:
    """A backend's args and its models' args, each flag said in one place."""

    args: list[str]
    models: dict[str, list[str]]
    once: list[tuple[str, str]] = field(default_factory=list)  # (backend's flag, every model's) made one


def fold(base: list[str], models: dict[str, list[str]]) -> Folded:
    """Where every model overrides a backend flag with one value, the backend takes that value
    and the models drop it; where they disagree, the backend drops it and each model says its
    own (llama-server keeps a flag's last value, so each model runs as before either way)."""
    base = list(base)
    models = {mid: list(args) for mid, args in models.items()}
    once: list[tuple[str, str]] = []
    own = {mid: values(args) for mid, args in models.items()}
    for name in [f.name for f in flags.parse(base) if f.name]:
        flag = next(f for f in flags.parse(base) if f.name == name)
        overrides = {mid: said[name] for mid, said in own.items() if name in said}
        if not overrides:
            continue
        value = next(iter(overrides.values()))
        spelled = [flag.written] + ([value] if value is not None else [])
        if len(overrides) == len(models) and len(set(overrides.values())) == 1:
            kept = drop(base, [flag])
            base = kept[: flag.index] + spelled + kept[flag.index :]
            for mid, args in models.items():
                models[mid] = drop(args, [f for f in flags.parse(args) if f.name == name])
            once.append((f"{flag.written} {flag.value or ''}".rstrip(), " ".join(spelled)))
        else:
            base = drop(base, [flag])
            for mid in models:
                if mid not in overrides:
                    models[mid] += [flag.written] + ([flag.value] if flag.value is not None else [])
    return Folded(base, models, once)


def model_paths(cmd: str) -> list[str]:
    try:
        tokens = command.split(cmd)
    except ValueError:
        return []
    return [f.value for f in flags.parse(tokens[1:]) if f.name == "--model" and f.value]


def shared_env(envs: list[dict[str, str]]) -> dict[str, str]:
    if not envs:
        return {}
    first = envs[0]
    return {k: v for k, v in first.items() if re.match(ENV_NAME, k) and all(e.get(k) == v for e in envs[1:])}
