"""THE reader of a llama-server command line: its words and its environment, read as llama.cpp does.

The spec is `common_params_parse_ex` in common/arg.cpp at the pinned llama.cpp
(ggml-org/llama.cpp@{commit} — halogen.llamacpp.llama_flags.LLAMA_CPP_COMMIT, the table
scripts/gen-llama-flags generates from that file):

- the `LLAMA_ARG_*` variables of `set_env` are read first (and `LLAMA_ARG_NO_*` for a negated
  switch), then the command line, which overwrites them;
- each word is looked up whole, after turning '_' into '-' in a word that starts with '--'
  (`--ctx_size` is `--ctx-size`); a word not in the table stops llama-server, and so does
  `--flag=value`: the parser has no `=` form;
- a known flag takes its values from the words that follow, whatever they start with;
- a repeated flag is handled each time, so the last value wins (arg.cpp warns "only last value
  will be used"), except where the handler appends: `--api-key` adds to the keys.

Every caller that needs what a command line says (the model file, the key, the context, the
slots, the cache types, the flags that fetch a model at run time) asks here.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

from halogen.llamacpp import llama_flags

LLAMA_CPP = llama_flags.LLAMA_CPP_COMMIT


@dataclass(frozen=True)
class Spec:
    """One spelling of an option in the table."""

    name: str  # the canonical spelling: the option's last '--' spelling
    values: int  # words that follow it: 0, 1 or 2
    env: str | None  # LLAMA_ARG_...: the same setting from the environment
    server: bool  # llama-server takes it (others are for llama-cli, llama-bench, ...)
    programs: tuple[str, ...]  # LLAMA_EXAMPLE_* it is declared for, without the prefix
    option: str = ""  # the option's canonical spelling, the same for its --no-... spellings
    negated: bool = False  # a --no-... spelling of a switch


def _canonical_of(spellings: Sequence[str]) -> str:
    long = [s for s in spellings if s.startswith("--")]
    return long[-1] if long else spellings[-1]


def _table() -> dict[str, Spec]:
    known: dict[str, Spec] = {}
    for spellings, negated, values, examples, excludes, env in llama_flags.OPTIONS:
        # Every program but llama-download inherits COMMON (arg.cpp's add_opt).
        server = ("SERVER" in examples or "COMMON" in examples) and "SERVER" not in excludes
        name = _canonical_of(spellings)
        for group, is_negated in ((spellings, False), (negated, True)):
            if not group:
                continue
            spec = Spec(_canonical_of(group), values, env, server, examples, name, is_negated)
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

_BY_ENV: Mapping[str, Spec] = MappingProxyType(
    {spec.env: spec for spec in KNOWN.values() if spec.env and spec.server and not spec.negated}
)

FETCHING = frozenset(
    {
        # The flags that make llama-server fetch a model (or a list of models) at run time
        # instead of loading the one file it is given (common/arg.cpp: common_params_handle_model,
        # and tools/server's router mode for --models-dir / --models-preset).
        "--model-url",
        "--docker-repo",
        "--hf-repo",
        "--hf-file",
        "--hf-repo-draft",
        "--mmproj-url",
        "--models-dir",
        "--models-preset",
    }
)

_NUMBER = re.compile(r"^-?[0-9]+(\.[0-9]+)?$")


@dataclass(frozen=True)
class Flag:
    name: str  # canonical spelling ('' for a word that is no flag)
    written: str  # as the user wrote it
    value: str | None  # two values are joined with a space
    index: int  # position of the flag in its list


def spec_of(word: str) -> Spec | None:
    """The table's entry for a word, as arg.cpp looks it up ('_' is '-' after '--')."""
    return KNOWN.get(word.replace("_", "-") if word.startswith("--") else word)


def canonical(flag: str) -> str:
    spec = spec_of(flag)
    if spec is not None:
        return spec.name
    return flag.replace("_", "-") if flag.startswith("--") else flag


def _is_flag(token: str) -> bool:
    return token.startswith("-") and len(token) > 1 and not _NUMBER.match(token)


def parse(args: Sequence[str]) -> list[Flag]:
    """Pair each flag with the values that follow it, as many as the table says it takes (a
    flag not in the table takes the next word unless that looks like a flag; `--x=v` of an
    unknown x is read as x and v, so a check can say what was meant); bare words with no flag
    are kept as positional `Flag`s with an empty name."""
    out: list[Flag] = []
    i = 0
    while i < len(args):
        token = args[i]
        if _is_flag(token):
            name, eq, inline = token.partition("=")
            spec = spec_of(token)
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


@dataclass(frozen=True)
class Refused:
    """A word llama-server stops at: where, and what to write instead."""

    index: int
    message: str
    hint: str


@dataclass(frozen=True)
class CommandLine:
    """What a llama-server command line sets, read as llama-server reads it."""

    values: Mapping[str, str]  # canonical flag -> its value (the last given wins; switches: "1"/"0")
    api_keys: tuple[str, ...]  # every key of --api-key, then of LLAMA_API_KEY
    api_key_files: tuple[str, ...]  # --api-key-file: files of keys, one a line ('#' comments)
    fetching: tuple[str, ...]  # the fetch flags given, as written ("-hf x/y", "LLAMA_ARG_HF_REPO")
    refused: tuple[Refused, ...] = field(default=())  # the `=` forms, which llama-server refuses

    def get(self, *names: str) -> str | None:
        for name in names:
            if name in self.values:
                return self.values[name]
        return None

    @property
    def model(self) -> str | None:
        """The GGUF it loads (`-m`, `--model`, `LLAMA_ARG_MODEL`)."""
        return self.values.get("--model") or None

    @property
    def api_key(self) -> str | None:
        """A key llama-server accepts, given inline: the first of `--api-key`, else of
        `LLAMA_API_KEY` (for `--api-key-file`, see `first_key`)."""
        return self.api_keys[0] if self.api_keys else None

    @property
    def ctx_size(self) -> int | None:
        return _int(self.values.get("--ctx-size"))

    @property
    def parallel(self) -> int | None:
        return _int(self.values.get("--parallel"))

    @property
    def cache_type_k(self) -> str | None:
        return self.values.get("--cache-type-k")

    @property
    def cache_type_v(self) -> str | None:
        return self.values.get("--cache-type-v")


def first_key(text: str) -> str | None:
    """The first key of an `--api-key-file`'s text: one key a line, '#' starts a comment line
    (common/arg.cpp's handler keeps every other non-empty line whole)."""
    for line in text.splitlines():
        if line and not line.startswith("#"):
            return line
    return None


def _int(value: str | None) -> int | None:
    return int(value) if value is not None and value.lstrip("-").isdigit() else None


def _truthy(value: str) -> bool:
    # common/arg.cpp is_truthy: "on", "enabled", "true", "1".
    return value in ("on", "enabled", "true", "1")


def read(args: Sequence[str], env: Mapping[str, str] | None = None) -> CommandLine:
    """Read `args` (the words after the program) and `env` as llama-server does."""
    values: dict[str, str] = {}
    keys: list[str] = []
    key_files: list[str] = []
    fetching: list[str] = []
    for variable, value in (env or {}).items():
        spec = _BY_ENV.get(variable)
        negated = variable.startswith("LLAMA_ARG_NO_") and _BY_ENV.get(
            variable.replace("LLAMA_ARG_NO_", "LLAMA_ARG_", 1)
        )
        if negated:
            values[negated.option] = "0"
        elif spec is None:
            continue
        elif spec.name == "--api-key":
            keys += _csv(value)
        elif spec.name == "--api-key-file":
            key_files.append(value)
        else:
            values[spec.name] = value if spec.values else ("1" if _truthy(value) else "0")
            if spec.name in FETCHING:
                fetching.append(variable)
    refused: list[Refused] = []
    cli_keys: list[str] = []
    for flag in parse(args):
        word = args[flag.index]
        spec = spec_of(word) if flag.name else None
        if spec is None and flag.name and "=" in word and (spec := spec_of(flag.written)):
            # llama-server stops at `--flag=value`; what was meant is still read, so that the
            # runtime, which cannot refuse, sees it: the build refuses the word.
            name, _, inline = word.partition("=")
            refused.append(
                Refused(
                    flag.index,
                    f"llama-server does not read {word}: it looks the whole word up as a flag",
                    f"write the flag and its value as two items: {name} {inline}",
                )
            )
        if spec is None:
            continue
        if spec.values:
            if flag.value is None:
                continue
            if spec.name == "--api-key":
                cli_keys += _csv(flag.value)
                continue
            if spec.name == "--api-key-file":
                key_files.append(flag.value)
                continue
            values[spec.name] = flag.value
        else:
            values[spec.option] = "0" if spec.negated else "1"
        if spec.name in FETCHING:
            fetching.append(f"{flag.written} {flag.value or ''}".strip())
    # Every key is accepted (arg.cpp appends them all); the command line's come first.
    keys = cli_keys + keys
    return CommandLine(
        MappingProxyType(values), tuple(keys), tuple(key_files), tuple(fetching), tuple(refused)
    )


def _csv(value: str) -> list[str]:
    # common/arg.cpp's --api-key handler: parse_csv_row, empty keys dropped.
    return [key.strip() for key in value.split(",") if key.strip()]


def of_command(argv: Sequence[str], env: Mapping[str, str] | Sequence[tuple[str, str]] = ()) -> CommandLine:
    """Read a whole command (its program first), as a Runnable holds it. A config's commands are
    few and fixed, and the runtime asks on every catalogue request and model start: each is read
    once (a CommandLine is immutable, so the reading is shared)."""
    pairs = tuple(env.items()) if isinstance(env, Mapping) else tuple(env)
    return _of_command(tuple(argv), pairs)


@functools.lru_cache(maxsize=1024)
def _of_command(argv: tuple[str, ...], env: tuple[tuple[str, str], ...]) -> CommandLine:
    return read(argv[1:], dict(env))
