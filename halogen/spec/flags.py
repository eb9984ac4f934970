"""llama-server flags, enough to see one flag given twice under two spellings."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

SPELLINGS = {
    "-ngl": "--n-gpu-layers",
    "--gpu-layers": "--n-gpu-layers",
    "-c": "--ctx-size",
    "-m": "--model",
    "-t": "--threads",
    "-tb": "--threads-batch",
    "-b": "--batch-size",
    "-ub": "--ubatch-size",
    "-fa": "--flash-attn",
    "-np": "--parallel",
    "-ctk": "--cache-type-k",
    "-ctv": "--cache-type-v",
    "-s": "--seed",
    "-n": "--n-predict",
    "-a": "--alias",
    "-dev": "--device",
    "-sm": "--split-mode",
    "-ts": "--tensor-split",
    "-mg": "--main-gpu",
    "-cb": "--cont-batching",
    "--embedding": "--embeddings",
}
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
    value: str | None
    index: int  # position of the flag in its list


def canonical(flag: str) -> str:
    # llama-server reads '_' as '-' in long flags: --ctx_size is --ctx-size.
    if flag.startswith("--"):
        flag = flag.replace("_", "-")
    return SPELLINGS.get(flag, flag)


def _is_flag(token: str) -> bool:
    return token.startswith("-") and len(token) > 1 and not _NUMBER.match(token)


def parse(args: Sequence[str]) -> list[Flag]:
    """Pair each flag with the value that follows it; bare words with no flag are kept as
    positional `Flag`s with an empty name."""
    out: list[Flag] = []
    i = 0
    while i < len(args):
        token = args[i]
        if _is_flag(token):
            name, eq, inline = token.partition("=")
            if eq:
                out.append(Flag(canonical(name), name, inline, i))
            elif i + 1 < len(args) and not _is_flag(args[i + 1]):
                out.append(Flag(canonical(name), name, args[i + 1], i))
                i += 1
            else:
                out.append(Flag(canonical(name), name, None, i))
        else:
            out.append(Flag("", "", token, i))
        i += 1
    return out
