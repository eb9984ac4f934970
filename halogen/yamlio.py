"""YAML in with positions, YAML out that reads back the same under YAML 1.1 and 1.2.

Input goes through ruamel.yaml's round-trip parser only to learn where each key and item
stands; what the rest of halogen sees is plain data (dict, list, str, int, float, bool, None)
plus a `Positions` index from field path to (line, column).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from halogen.diagnostics import Diagnostic, Invalid

if TYPE_CHECKING:
    from ruamel.yaml.composer import Composer
    from ruamel.yaml.constructor import RoundTripConstructor

Path_ = tuple[str | int, ...]

MAX_BYTES = 1024 * 1024
_SURROGATE = re.compile("[\ud800-\udfff]")
MAX_NODES = 100_000
MAX_DEPTH = 64
_STANDARD_TAGS = {
    None,
    "tag:yaml.org,2002:str",
    "tag:yaml.org,2002:int",
    "tag:yaml.org,2002:float",
    "tag:yaml.org,2002:bool",
    "tag:yaml.org,2002:null",
    "tag:yaml.org,2002:map",
    "tag:yaml.org,2002:seq",
}


@dataclass
class Document:
    """A loaded file: its plain data and where each field path was written."""

    name: str
    data: Any
    positions: dict[Path_, tuple[int, int]] = field(default_factory=dict)
    values: dict[Path_, tuple[int, int]] = field(default_factory=dict)
    """Where the value at a path starts (a key's position is in `positions`)."""
    quoted: set[Path_] = field(default_factory=set)
    """Paths whose value was written as a quoted string."""
    lines: list[str] = field(default_factory=list)
    sha256: str = ""
    """Of the bytes read (hex), before any decoding: what `halogen build` calls the config's
    version (compiler.render.manifests.config_version), so serve can say which one it runs."""

    def value_at(self, path: Path_) -> tuple[int, int]:
        return self.values.get(path) or self.where(path)

    def source(self, path: Path_) -> str:
        """The plain scalar written at `path`, as written (e.g. 1.30, not the float 1.3)."""
        line, column = self.values.get(path, (0, 0))
        if not line or line > len(self.lines):
            return ""
        text = self.lines[line - 1][column - 1 :]
        return re.split(r"\s+#|[,\]}]|\s*$", text, maxsplit=1)[0].strip()

    def where(self, path: Path_) -> tuple[int, int]:
        """The position of the deepest prefix of `path` that was written (so a missing key
        points at its parent mapping)."""
        for end in range(len(path), -1, -1):
            pos = self.positions.get(tuple(path[:end]))
            if pos:
                return pos
        return (1, 1)

    def diagnostic(self, path: Path_, message: str, hint: str = "", *, severity: str = "error") -> Diagnostic:
        line, column = self.where(path)
        return Diagnostic(
            self.name,
            line,
            column,
            dotted(path),
            message,
            hint,
            severity,  # type: ignore[arg-type]
        )


def dotted(path: Path_) -> str:
    out = ""
    for part in path:
        if isinstance(part, str) and not part.isprintable():
            part = json.dumps(part)  # a key holding a newline stays on the diagnostic's line
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _too_big(name: str, size: int) -> Invalid:
    return Invalid(
        [
            Diagnostic(
                name,
                0,
                0,
                "",
                f"file is {size} bytes, over the {MAX_BYTES} byte limit",
                "split it or remove what is not configuration",
            )
        ]
    )


def _decode(raw: bytes, name: str) -> str:
    if len(raw) > MAX_BYTES:
        raise _too_big(name, len(raw))
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        column = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        raise Invalid(
            [Diagnostic(name, line, column, "", "file is not valid UTF-8", "save it as UTF-8")]
        ) from None
    if "\x00" in text:
        offset = text.index("\x00")
        line = text.count("\n", 0, offset) + 1
        raise Invalid(
            [
                Diagnostic(
                    name,
                    line,
                    offset - text.rfind("\n", 0, offset),
                    "",
                    "file contains a NUL byte",
                    "remove it; YAML files are text",
                )
            ]
        )
    return text.replace("\r\n", "\n")


def _mark(exc: Exception) -> tuple[int, int]:
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    if mark is None:
        return (0, 0)
    return (mark.line + 1, mark.column + 1)


def _composer() -> type[Composer]:
    """ruamel's composer, stopping at the first node past the depth or node limit: a deep or
    huge file fails at its position, before the rest of it is parsed or Python's recursion
    limit is reached. Aliases add no node here; `_plain` counts what they expand to."""
    from ruamel.yaml.composer import Composer, ComposerError
    from ruamel.yaml.events import AliasEvent

    class Limited(Composer):
        nodes = 0

        def compose_node(self, parent: Any, index: Any) -> Any:
            if not self.parser.check_event(AliasEvent):
                self.nodes += 1
                problem = ""
                if self.depth >= MAX_DEPTH + 1:
                    problem = f"nesting deeper than {MAX_DEPTH} levels"
                elif self.nodes > MAX_NODES:
                    problem = f"document has more than {MAX_NODES} nodes"
                if problem:
                    raise ComposerError(None, None, problem, self.parser.peek_event().start_mark)
            return super().compose_node(parent, index)

    return Limited


def _constructor() -> type[RoundTripConstructor]:
    """ruamel's round-trip constructor, refusing integers no reader of the output can hold:
    llama-swap (Go) and Kubernetes read 64-bit integers, and Python itself will not parse
    one of over 4300 digits."""
    from ruamel.yaml.constructor import ConstructorError, RoundTripConstructor

    class Bounded(RoundTripConstructor):
        def construct_yaml_int(self, node: Any) -> Any:
            if len(node.value) <= 100:
                value = super().construct_yaml_int(node)
                if -(2**63) <= value < 2**63:
                    return value
            raise ConstructorError(None, None, "integer is outside the 64-bit range", node.start_mark)

    Bounded.add_constructor("tag:yaml.org,2002:int", Bounded.construct_yaml_int)
    return Bounded


def load(raw: bytes, name: str) -> Document:
    """Parse one YAML document, raising `Invalid` with a positioned diagnostic on any problem."""
    from ruamel.yaml import YAML
    from ruamel.yaml.error import MarkedYAMLError, YAMLError

    text = _decode(raw, name)
    yaml = YAML(typ="rt", pure=True)
    yaml.Composer = _composer()
    yaml.Constructor = _constructor()
    yaml.allow_duplicate_keys = False
    yaml.preserve_quotes = True  # so a hint can tell "4096" from 4096
    try:
        node = yaml.load(io.StringIO(text))
    except MarkedYAMLError as exc:
        line, column = _mark(exc)
        problem = (exc.problem or exc.context or "invalid YAML").strip()
        hint = "each key may appear once per mapping" if "duplicate" in problem else ""
        if "\t" in problem or "'\\t'" in problem or "tab" in problem.lower():
            hint = "indent with spaces, not tabs"
        if "another document" in problem:
            problem = "a second YAML document follows the first"
            hint = "one document per file: remove the '---' and what follows, or merge them"
        raise Invalid([Diagnostic(name, line, column, "", problem, hint)]) from None
    except (YAMLError, RecursionError) as exc:
        raise Invalid([Diagnostic(name, 0, 0, "", f"invalid YAML: {exc}".strip())]) from None
    doc = Document(name, None, lines=text.split("\n"), sha256=hashlib.sha256(raw).hexdigest())
    budget = [MAX_NODES, MAX_BYTES]  # nodes, characters: what aliases may expand to
    doc.data = _plain(node, (), doc, budget, (1, 1))
    return doc


def _plain(node: Any, path: Path_, doc: Document, budget: list[int], pos: tuple[int, int]) -> Any:
    from ruamel.yaml.comments import (
        CommentedMap,
        CommentedOrderedMap,
        CommentedSeq,
        CommentedSet,
        TaggedScalar,
    )

    doc.positions.setdefault(path, pos)
    if type(node).__name__ in ("DoubleQuotedScalarString", "SingleQuotedScalarString"):
        doc.quoted.add(path)
    # Aliases repeat content without adding text: charge each node and its characters
    # (keys included) against the limits, so no file expands past what it could have written.
    text = (
        node if isinstance(node, str) else "".join(map(str, node)) if isinstance(node, CommentedMap) else ""
    )
    budget[0] -= 1
    budget[1] -= len(text)
    if min(budget) < 0:
        over = f"{MAX_NODES} nodes" if budget[0] < 0 else f"{MAX_BYTES} characters"
        raise Invalid(
            [
                doc.diagnostic(
                    path,
                    f"document expands to more than {over}",
                    "remove anchors and aliases that multiply content",
                )
            ]
        )
    if _SURROGATE.search(text):
        # Only an escape such as "\ud800" makes one, and UTF-8 cannot write it out.
        raise Invalid(
            [
                doc.diagnostic(
                    path,
                    "text holds a lone surrogate (\\ud800-\\udfff)",
                    "escape the whole character, e.g. \\U0001F600",
                )
            ]
        )
    if len(path) > MAX_DEPTH:
        raise Invalid([doc.diagnostic(path, f"nesting deeper than {MAX_DEPTH} levels")])
    tag = getattr(getattr(node, "tag", None), "value", None)
    # Types that only these tags construct, and that carry no tag of their own.
    built: dict[type, str] = {
        CommentedOrderedMap: "!!omap",
        CommentedSet: "!!set",
        bytes: "!!binary",
        list: "!!pairs",
    }
    tag = built.get(type(node), tag)
    if isinstance(node, TaggedScalar) or tag not in _STANDARD_TAGS:
        raise Invalid(
            [
                doc.diagnostic(
                    path,
                    f"YAML tag {tag or getattr(node, 'tag', '')!s} is not allowed",
                    "remove the tag; halogen reads plain YAML only",
                )
            ]
        )
    if isinstance(node, CommentedMap):
        out: dict[str, Any] = {}
        for key, value in node.items():
            # A key merged in by `<<: *anchor` has no position here: use the mapping's.
            line, column, *at = node.lc.data.get(key, (pos[0] - 1, pos[1] - 1))
            if len(at) == 2 and isinstance(at[0], int) and isinstance(at[1], int):
                doc.values[(*path, str(key) if not isinstance(key, bool) else str(key).lower())] = (
                    at[0] + 1,
                    at[1] + 1,
                )
            if not isinstance(key, str | int | float | bool) or key is None:
                raise Invalid([doc.diagnostic(path, f"mapping key {key!r} is not a scalar")])
            skey = str(key) if not isinstance(key, bool) else str(key).lower()
            if skey in out:  # 1 and "1", or true and "true": one key once read as text
                raise Invalid(
                    [
                        Diagnostic(
                            doc.name,
                            line + 1,
                            column + 1,
                            dotted((*path, skey)),
                            f"key {skey!r} appears twice in this mapping",
                            "each key may appear once per mapping",
                        )
                    ]
                )
            out[skey] = _plain(value, (*path, skey), doc, budget, (line + 1, column + 1))
        return out
    if isinstance(node, CommentedSeq):
        items = []
        for index, value in enumerate(node):
            ipos = node.lc.item(index)
            doc.values[(*path, index)] = (ipos[0] + 1, ipos[1] + 1)
            items.append(_plain(value, (*path, index), doc, budget, (ipos[0] + 1, ipos[1] + 1)))
        return items
    if isinstance(node, bool) or node is None:
        return node
    if isinstance(node, int):
        return int(node)
    if isinstance(node, float):
        return float(node)
    if isinstance(node, str):
        return str(node)
    raise Invalid(
        [
            doc.diagnostic(
                path,
                f"value of type {type(node).__name__} is not allowed here",
                "use a string, number, boolean, list or mapping",
            )
        ]
    )


def read(path: Path, name: str | None = None, *, what: str = "file") -> Document:
    """Load a regular file, reading no more than the size limit: a FIFO would block and a
    device such as /dev/zero never ends. `what` names the file in the message when it
    cannot be read."""
    label = name or str(path)
    try:
        if not stat.S_ISREG(path.stat().st_mode):
            raise Invalid(
                [
                    Diagnostic(
                        label, 0, 0, "", "not a regular file", "halogen reads YAML from plain files only"
                    )
                ]
            )
        with path.open("rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            if size > MAX_BYTES:
                raise _too_big(label, size)
            raw = fh.read(MAX_BYTES + 1)
    except OSError as exc:
        raise Invalid([Diagnostic(label, 0, 0, "", f"cannot read {what}: {exc.strerror or exc}")]) from None
    return load(raw, label)


# --- output -------------------------------------------------------------------------------

# Plain scalars that YAML 1.1 (PyYAML, Kubernetes) or YAML 1.2 (ruamel.yaml) would read as
# something other than the string: they get quoted, so every reader sees the same value.
_AMBIGUOUS = re.compile(
    r"""^(?:
        ~|null|Null|NULL|
        y|Y|yes|Yes|YES|n|N|no|No|NO|true|True|TRUE|false|False|FALSE|on|On|ON|off|Off|OFF|
        [-+]?(?:0|[1-9][0-9_]*)|0[0-7_]+|0o[0-7_]+|0x[0-9a-fA-F_]+|0b[01_]+|
        [-+]?[1-9][0-9_]*(?::[0-5]?[0-9])+(?:\.[0-9_]*)?|
        [-+]?(?:[0-9][0-9_]*)?\.[0-9_]*(?:[eE][-+]?[0-9]+)?|[-+]?[0-9][0-9_]*[eE][-+]?[0-9]+|
        [-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN)|
        [0-9]{4}-[0-9]{1,2}-[0-9]{1,2}.*|<<|=
    )$""",
    re.VERBOSE,
)


# Characters that a plain, single-quoted or literal scalar does not carry through every reader
# (controls, DEL, CR, the line breaks YAML 1.1 adds: NEL, LS, PS; the BOM and non-characters):
# a string holding one is written double-quoted, where each becomes an escape.
SPECIAL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\ufeff\ufffe\uffff]")


def needs_quotes(value: str) -> bool:
    return bool(_AMBIGUOUS.match(value)) or value == "" or value != value.strip()


def _scalar(value: str) -> Any:
    from ruamel.yaml.scalarstring import DoubleQuotedScalarString, LiteralScalarString

    if SPECIAL.search(value):
        return DoubleQuotedScalarString(value)
    if "\n" in value and value == value.rstrip("\n") + "\n" and not value.startswith((" ", "\n")):
        return LiteralScalarString(value)
    if needs_quotes(value) or "\n" in value:
        return DoubleQuotedScalarString(value)
    return value


def _prepare(value: Any) -> Any:
    from ruamel.yaml.comments import CommentedMap

    if isinstance(value, Mapping):
        out = CommentedMap()
        for k, v in value.items():
            out[_scalar(k) if isinstance(k, str) else k] = _prepare(v)
        return out
    if isinstance(value, list | tuple):
        return [_prepare(v) for v in value]
    if isinstance(value, str):
        return _scalar(value)
    return value


def dump(data: Any, header: str = "") -> str:
    """Block-style YAML: mappings in the given order, multi-line strings as literal blocks."""
    from ruamel.yaml import YAML

    yaml = YAML(typ="rt", pure=True)
    yaml.width = 4096
    yaml.indent(mapping=2, sequence=4, offset=2)
    stream = io.StringIO()
    stream.write(header)
    yaml.dump(_prepare(data), stream)
    return stream.getvalue()
