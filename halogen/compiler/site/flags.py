"""Checking a site's llama-server flags: what the pinned llama.cpp refuses, and what halogen owns.

The spellings and the reading are halogen.llamacpp.cmdline's; its table (llama_flags.py) is
generated from that llama.cpp's common/arg.cpp by scripts/gen-llama-flags. Its parser (common_params_parse_ex there) looks each word up whole,
after turning '_' into '-' in a word that starts with '--', and takes a known flag's values from
the words that follow, whatever they start with. So `--ctx-size=4096`, a misspelt flag and a
word where no flag expects one all stop llama-server at start: the build refuses them here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import MappingProxyType

from halogen.llamacpp import llama_flags
from halogen.llamacpp.cmdline import KNOWN, SPELLINGS, Flag, Spec, canonical, parse
from halogen.llamacpp.cmdline import spec_of as _spec
from halogen.llamaswap.names import did_you_mean

__all__ = ["KNOWN", "OWNED", "REMOVED", "SPELLINGS", "Flag", "Spec", "canonical", "parse", "refused"]

LLAMA_CPP = llama_flags.LLAMA_CPP_COMMIT[:7]


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
