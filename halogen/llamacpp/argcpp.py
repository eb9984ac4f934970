"""Reads llama.cpp's option table out of `common/arg.cpp` and writes halogen's flag table from it.

Run as `python -m halogen.llamacpp.argcpp SDIST [OUT]` (scripts/gen-llama-flags does, with the
llama-cpp-python sdist the tests build llama-server from): SDIST is that sdist (.tar.gz) or its
unpacked folder. Each `add_opt(common_arg({...}, ...))` call in arg.cpp gives one option: its
spellings, its negated spellings (`--no-...`), how many values follow it (0, 1 or 2: which
`common_arg` constructor it calls), the programs it applies to (`set_examples`, `set_excludes`)
and its environment variable (`set_env`). The llama.cpp commit is the sdist's submodule HEAD.
"""

from __future__ import annotations

import re
import sys
import tarfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

ARG_CPP = "vendor/llama.cpp/common/arg.cpp"
SUBMODULE_HEAD = ".git/modules/vendor/llama.cpp/HEAD"
TABLE = Path(__file__).with_name("llama_flags.py")

_STRING = re.compile(r'"((?:[^"\\]|\\.)*)"')
_EXAMPLE = re.compile(r"LLAMA_EXAMPLE_(\w+)")
_NAMED_LIST = re.compile(r"initializer_list<enum llama_example>\s+(\w+)\s*=\s*\{([^}]*)\}")
_CHAIN = re.compile(r"\s*\.\s*(\w+)\s*\(")


@dataclass(frozen=True)
class Option:
    spellings: tuple[str, ...]
    negated: tuple[str, ...]
    values: int
    examples: tuple[str, ...]
    excludes: tuple[str, ...]
    env: str | None


@dataclass(frozen=True)
class Source:
    arg_cpp: str
    commit: str
    name: str  # e.g. "llama_cpp_python-0.3.36"


def _blank_comments(text: str) -> str:
    """The text with comments replaced by spaces (string and character literals kept), so that
    offsets stay and commented-out options are not read."""
    out = list(text)
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c in "\"'":
            j = i + 1
            while j < n and text[j] != c:
                j += 2 if text[j] == "\\" else 1
            i = j + 1
        elif text.startswith("//", i):
            j = text.find("\n", i)
            j = n if j < 0 else j
            out[i:j] = " " * (j - i)
            i = j
        elif text.startswith("/*", i):
            j = text.find("*/", i + 2)
            j = n if j < 0 else j + 2
            out[i:j] = [ch if ch == "\n" else " " for ch in text[i:j]]
            i = j
        else:
            i += 1
    return "".join(out)


def _past_quoted(text: str, start: int) -> int:
    """The index just past the C string or character literal that opens at `start`."""
    quote, j = text[start], start + 1
    while text[j] != quote:
        j += 2 if text[j] == "\\" else 1
    return j + 1


def _close(text: str, start: int) -> int:
    """The index just past the bracket that closes the one at `start`."""
    depth = 0
    i = start
    while i < len(text):
        c = text[i]
        if c in "\"'":
            i = _past_quoted(text, i)
            continue
        if c in "({[":
            depth += 1
        elif c in ")}]":
            depth -= 1
            if depth == 0:
                return i + 1
        i += 1
    raise ValueError(f"unbalanced bracket at offset {start}")


def _split(inner: str) -> list[str]:
    """Top-level comma-separated parts of an argument list."""
    parts: list[str] = []
    depth, i, begin = 0, 0, 0
    while i < len(inner):
        c = inner[i]
        if c in "\"'":
            i = _past_quoted(inner, i)
            continue
        if c in "({[":
            depth += 1
        elif c in ")}]":
            depth -= 1
        elif c == "," and depth == 0:
            parts.append(inner[begin:i].strip())
            begin = i + 1
        i += 1
    parts.append(inner[begin:].strip())
    return parts


def _examples(text: str, named: dict[str, tuple[str, ...]]) -> tuple[str, ...]:
    text = text.strip()
    if text in named:
        return named[text]
    return tuple(_EXAMPLE.findall(text))


def options(arg_cpp: str) -> list[Option]:
    """Every option `add_opt` registers, in the file's order."""
    text = _blank_comments(arg_cpp)
    named = {m[1]: tuple(_EXAMPLE.findall(m[2])) for m in _NAMED_LIST.finditer(text)}
    found: list[Option] = []
    for match in re.finditer(r"\badd_opt\s*\(\s*common_arg\s*\(", text):
        ctor_open = match.end() - 1
        ctor_end = _close(text, ctor_open)
        args = _split(text[ctor_open + 1 : ctor_end - 1])
        spellings = tuple(_STRING.findall(args[0]))
        negated: tuple[str, ...] = ()
        # common_arg's constructors: (args, help, handler) takes no value; (args, args_neg, help,
        # handler) is a toggle; (args, hint, help, handler) one value; (args, hint, hint2, help,
        # handler) two.
        if len(args) == 4 and args[1].startswith("{"):
            negated, values = tuple(_STRING.findall(args[1])), 0
        elif len(args) in (3, 4, 5):
            values = len(args) - 3
        else:
            raise ValueError(f"common_arg with {len(args)} arguments for {spellings}")
        examples: tuple[str, ...] = ("COMMON",)
        excludes: tuple[str, ...] = ()
        env: str | None = None
        at = ctor_end
        while chained := _CHAIN.match(text, at):
            call_end = _close(text, chained.end() - 1)
            inner = text[chained.end() : call_end - 1]
            if chained[1] == "set_examples":
                examples = _examples(inner, named)
            elif chained[1] == "set_excludes":
                excludes = _examples(inner, named)
            elif chained[1] == "set_env":
                literal = _STRING.search(inner)
                env = literal[1] if literal else inner.strip()
            at = call_end
        found.append(Option(spellings, negated, values, examples, excludes, env))
    if not found:
        raise ValueError("no add_opt(common_arg(...)) call found: is this llama.cpp's common/arg.cpp?")
    return found


def read_source(sdist: Path) -> Source:
    """arg.cpp and the llama.cpp commit from a llama-cpp-python sdist, packed or unpacked."""
    if sdist.is_dir():
        return Source(
            (sdist / ARG_CPP).read_text(encoding="utf-8"),
            (sdist / SUBMODULE_HEAD).read_text(encoding="ascii").strip(),
            sdist.name,
        )
    with tarfile.open(sdist) as tar:
        top = PurePosixPath(tar.getnames()[0]).parts[0]

        def member(path: str) -> str:
            handle = tar.extractfile(f"{top}/{path}")
            if handle is None:
                raise ValueError(f"{sdist}: {top}/{path} is not a file")
            return handle.read().decode("utf-8")

        return Source(member(ARG_CPP), member(SUBMODULE_HEAD).strip(), top)


def render(source: Source) -> str:
    """The table as a Python module: deterministic, one option a line."""
    lines = [
        f'"""llama-server\'s flags at llama.cpp {source.commit[:7]}: generated from common/arg.cpp.',
        "",
        f"Source: {source.name} (its vendor/llama.cpp is ggml-org/llama.cpp@{source.commit}).",
        "Do not edit: run scripts/gen-llama-flags. Each option: its spellings, its negated spellings,",
        "how many values follow it, the llama.cpp programs it applies to (LLAMA_EXAMPLE_*), those it",
        "is excluded from, and its environment variable.",
        '"""',
        "",
        "from typing import Final",
        "",
        f'LLAMA_CPP_COMMIT: Final = "{source.commit}"',
        "",
        "Option = tuple[tuple[str, ...], tuple[str, ...], int, tuple[str, ...], tuple[str, ...], str | None]",
        "# fmt: off",
        "OPTIONS: Final[tuple[Option, ...]] = (",
    ]
    for o in options(source.arg_cpp):
        lines.append(
            f"    ({_tuple(o.spellings)}, {_tuple(o.negated)}, {o.values}, {_tuple(o.examples)}, "
            f"{_tuple(o.excludes)}, {_quote(o.env) if o.env else None}),"
        )
    lines += [")", "# fmt: on", ""]
    return "\n".join(lines)


def _quote(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _tuple(items: tuple[str, ...]) -> str:
    if not items:
        return "()"
    return "(" + ", ".join(_quote(s) for s in items) + ("," if len(items) == 1 else "") + ")"


def main(argv: list[str]) -> int:
    if not 1 <= len(argv) <= 2:
        print("usage: python -m halogen.llamacpp.argcpp SDIST [OUT]", file=sys.stderr)
        return 2
    out = Path(argv[1]) if len(argv) == 2 else TABLE
    try:
        text = render(read_source(Path(argv[0])))
    except (OSError, ValueError, KeyError, tarfile.TarError) as exc:
        print(f"gen-llama-flags: {argv[0]}: {exc}", file=sys.stderr)
        return 1
    out.write_text(text, encoding="utf-8")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
