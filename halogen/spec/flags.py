"""llama-server's flags as the pinned llama.cpp reads them: spellings, values, and what is refused.

The table (llama_flags.py) is generated from that llama.cpp's common/arg.cpp by
scripts/gen-llama-flags. Its parser (common_params_parse_ex there) looks each word up whole,
after turning '_' into '-' in a word that starts with '--', and takes a known flag's values from
the words that follow, whatever they start with. So `--ctx-size=4096`, a misspelt flag and a
word where no flag expects one all stop llama-server at start: the build refuses them here.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType

from halogen.llamaswap.resolve import did_you_mean
from halogen.spec import llama_flags

LLAMA_CPP = llama_flags.LLAMA_CPP_COMMIT[:7]


@dataclass(frozen=True)
class Spec:
    """One spelling of an option in the table."""

    name: str  # the canonical spelling: the option's last '--' spelling
    values: int  # words that follow it: 0, 1 or 2
    env: str | None  # LLAMA_ARG_...: the same setting from the environment
    server: bool  # llama-server takes it (others are for llama-cli, llama-bench, ...)
    programs: tuple[str, ...]  # LLAMA_EXAMPLE_* it is declared for, without the prefix


def _canonical_of(spellings: Sequence[str]) -> str:
    long = [s for s in spellings if s.startswith("--")]
    return long[-1] if long else spellings[-1]


def _table() -> dict[str, Spec]:
    known: dict[str, Spec] = {}
    for spellings, negated, values, examples, excludes, env in llama_flags.OPTIONS:
        # Every program but llama-download inherits COMMON (arg.cpp's add_opt).
        server = ("SERVER" in examples or "COMMON" in examples) and "SERVER" not in excludes
        for group in (spellings, negated):
            if not group:
                continue
            spec = Spec(_canonical_of(group), values, env, server, examples)
            for spelling in group:
                # arg.cpp registers some options twice, one per program (-np): llama-server's wins.
                if spelling not in known or (server and not known[spelling].server):
                    known[spelling] = spec
    return known


KNOWN: Mapping[str, Spec] = MappingProxyType(_table())
SPELLINGS: Mapping[str, str] = MappingProxyType(
    {spelling: spec.name for spelling, spec in KNOWN.items() if spelling != spec.name}
)
"""Every other spelling of an option -> its canonical one (-ngl -> --n-gpu-layers)."""

REMOVED: Mapping[str, str] = MappingProxyType(
    {
        # ggml-org/llama.cpp#20834 ("args: refactor mlock/mmap/directio into load-mode") folded
        # these toggles into --load-mode; common/arg.cpp at the pinned commit has none of them.
        "--no-mmap": "--load-mode none",
        "--mmap": "--load-mode mmap",
        "--mlock": "--load-mode mlock (or mmap+mlock: mmap, kept in RAM)",
        "-dio": "--load-mode dio",
        "--direct-io": "--load-mode dio",
        "-ndio": "--load-mode auto (the default)",
        "--no-direct-io": "--load-mode auto (the default)",
    }
)
"""Flags llama-server took before and refuses now -> what to write instead."""

# Written by halogen itself from the site and model files.
OWNED = {
    "--port": "the proxy assigns ports (${PORT})",
    "--host": "set `host` on the backend",
    "--model": "set `file` in the model file",
    "--ctx-size": "set `contextSize` in the model file",
}
_NUMBER = re.compile(r"^-?[0-9]+(\.[0-9]+)?$")


@dataclass(frozen=True)
class Flag:
    name: str  # canonical spelling
    written: str  # as the user wrote it
    value: str | None  # two values are joined with a space
    index: int  # position of the flag in its list


def canonical(flag: str) -> str:
    # llama-server reads '_' as '-' in long flags: --ctx_size is --ctx-size.
    if flag.startswith("--"):
        flag = flag.replace("_", "-")
    spec = KNOWN.get(flag)
    return spec.name if spec else flag


def _is_flag(token: str) -> bool:
    return token.startswith("-") and len(token) > 1 and not _NUMBER.match(token)


def _spec(token: str) -> Spec | None:
    return KNOWN.get(token.replace("_", "-") if token.startswith("--") else token)


def parse(args: Sequence[str]) -> list[Flag]:
    """Pair each flag with the values that follow it, as many as the table says it takes (a
    flag not in the table takes the next word unless that looks like a flag); bare words with
    no flag are kept as positional `Flag`s with an empty name."""
    out: list[Flag] = []
    i = 0
    while i < len(args):
        token = args[i]
        if _is_flag(token):
            name, eq, inline = token.partition("=")
            spec = _spec(token)
            if spec is None and eq:
                out.append(Flag(canonical(name), name, inline, i))
            elif spec is not None:
                taken = list(args[i + 1 : i + 1 + spec.values])
                out.append(Flag(spec.name, token, " ".join(taken) if taken else None, i))
                i += len(taken)
            elif i + 1 < len(args) and not _is_flag(args[i + 1]):
                out.append(Flag(canonical(name), name, args[i + 1], i))
                i += 1
            else:
                out.append(Flag(canonical(name), name, None, i))
        else:
            out.append(Flag("", "", token, i))
        i += 1
    return out


def refused(args: Sequence[str]) -> list[tuple[int, str, str]]:
    """(index, message, hint) for each word of `args` the pinned llama-server would refuse at
    start. Words holding a ${macro} are left alone: they may expand to anything."""
    problems: list[tuple[int, str, str]] = []
    previous: Spec | None = None  # the last flag's entry, while it is known
    for flag in parse(args):
        token = args[flag.index]
        if "${" in token:
            previous = None
            continue
        if not flag.name:
            problems.append(
                (
                    flag.index,
                    f"{token!r} is not a flag, and no flag before it takes a value here",
                    "every word is a flag or the value of the flag before it"
                    if previous is None or previous.values
                    else f"{previous.name} takes no value: remove {token!r}",
                )
            )
            continue
        spec = previous = _spec(token)
        if spec is None:
            problems.append((flag.index, *_unknown(token)))
        elif not spec.server:
            problems.append(
                (
                    flag.index,
                    f"{token} is not a llama-server flag (llama.cpp {LLAMA_CPP} declares it for "
                    f"{', '.join(p.lower().replace('_', '-') for p in spec.programs)})",
                    "remove it: llama-server refuses flags of other llama.cpp programs",
                )
            )
        elif spec.values and (flag.value is None or len(flag.value.split(" ")) < spec.values):
            problems.append(
                (
                    flag.index,
                    f"{token} expects {spec.values} value{'s' if spec.values > 1 else ''} after it",
                    "give the value as the next item of the list",
                )
            )
    return problems


def _unknown(token: str) -> tuple[str, str]:
    name, eq, inline = token.partition("=")
    if eq and _spec(name) is not None:
        return (
            f"llama-server does not read {token}: it looks the whole word up as a flag",
            f"write the flag and its value as two items: {name}, {inline!r}",
        )
    where = f"llama.cpp {LLAMA_CPP}"
    spelled = name.replace("_", "-") if name.startswith("--") else name
    if spelled in REMOVED:
        return f"{token} was removed from llama-server ({where} refuses it)", f"use {REMOVED[spelled]}"
    hint = did_you_mean(spelled, (s for s, spec in KNOWN.items() if spec.server))
    return (
        f"{token} is not a llama-server flag at {where}",
        hint or "see `llama-server --help` for the flags it takes",
    )
