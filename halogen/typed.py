"""Plain YAML data into pydantic models, with every error positioned and a hint where one helps."""

from __future__ import annotations

import difflib
import types
import typing
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from halogen import patterns
from halogen.diagnostics import Diagnostic
from halogen.yamlio import Document, Path_, dotted

M = TypeVar("M", bound=BaseModel)


def _fields_at(cls: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """The field names the model accepts at `loc`, for did-you-mean hints."""
    current: Any = cls
    for part in loc:
        current = _unwrap(current)
        if isinstance(current, type) and issubclass(current, BaseModel):
            info = current.model_fields.get(str(part))
            if info is None:
                return []
            current = info.annotation
        else:
            args = typing.get_args(current)
            current = args[-1] if args else None
    current = _unwrap(current)
    if isinstance(current, type) and issubclass(current, BaseModel):
        return list(current.model_fields)
    return []


def _unwrap(tp: Any) -> Any:
    """Optional[X] and X | None to X."""
    if isinstance(tp, types.UnionType) or typing.get_origin(tp) is typing.Union:
        real = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(real) == 1:
            return real[0]
    return tp


def _message(err: Any) -> str:
    kind = err["type"]
    if kind == "missing":
        return "required field is missing"
    if kind == "extra_forbidden":
        return "unknown key"
    if kind == "model_type":  # pydantic names the class, which no input file mentions
        return "input should be a valid dictionary"
    msg = str(err["msg"])
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, ") :]
    return msg[0].lower() + msg[1:] if msg else msg


def parse(
    cls: type[M], doc: Document, data: Any = None, prefix: Path_ = ()
) -> tuple[M | None, list[Diagnostic]]:
    """Validate `data` (default: the whole document) as `cls`.

    On errors, also try again without the top-level keys that failed, so later checks can
    still run on the rest of the file and report its other problems in the same run."""
    payload = doc.data if data is None else data
    try:
        return cls.model_validate(payload), []
    except ValidationError as exc:
        diagnostics = _diagnostics(cls, doc, exc, prefix, payload)
        partial = None
        if isinstance(payload, dict):
            bad = {str(e["loc"][0]) for e in exc.errors() if e["loc"]}
            try:
                partial = cls.model_validate({k: v for k, v in payload.items() if k not in bad})
            except ValidationError:
                partial = None
        return partial, diagnostics


def _data_loc(loc: tuple[Any, ...], data: Any, missing: bool) -> tuple[str | int, ...]:
    """`loc` as a path into the data: without the labels pydantic inserts for the branches of
    a union (`macros.x.int`, `macros.x.bool`), which name nothing in the data."""
    out: list[str | int] = []
    for i, part in enumerate(loc):
        if isinstance(data, dict) and (str(part) in data or (missing and i == len(loc) - 1)):
            out.append(part)
            data = data.get(str(part))
        elif isinstance(data, list) and isinstance(part, int) and part < len(data):
            out.append(part)
            data = data[part]
    return tuple(out)


def _diagnostics(
    cls: type[BaseModel], doc: Document, exc: ValidationError, prefix: Path_, payload: Any
) -> list[Diagnostic]:
    out = []
    for err in exc.errors():
        loc = _data_loc(err["loc"], payload, err["type"] == "missing")
        path: Path_ = (*prefix, *loc)
        hint = ""
        if err["type"] == "extra_forbidden":
            known = _fields_at(cls, loc[:-1])
            close = difflib.get_close_matches(str(loc[-1]), known, n=1, cutoff=0.6)
            hint = (
                f"did you mean {close[0]!r}?"
                if close
                else (f"known keys: {', '.join(known)}" if known else "")
            )
        elif err["type"] == "missing":
            hint = f"add {loc[-1]!r}" if loc else ""
        elif err["type"] in ("int_type", "float_type", "bool_type") and isinstance(err.get("input"), str):
            if err["type"] == "bool_type":
                hint = "write true or false"
            elif path in doc.quoted:
                hint = "write the number without quotes"
            else:
                hint = "write a number" + (", a whole one" if err["type"] == "int_type" else "")
            line, column = doc.value_at(path)
            out.append(Diagnostic(doc.name, line, column, dotted(path), _message(err), hint))
            continue
        elif err["type"] in ("int_type", "int_from_float") and isinstance(err.get("input"), float):
            line, column = doc.value_at(path)
            hint = "write a whole number, without a fraction"
            out.append(Diagnostic(doc.name, line, column, dotted(path), _message(err), hint))
            continue
        elif err["type"] == "string_type" and isinstance(err.get("input"), int | float) and path:
            written = doc.source(path) or str(err.get("input"))
            hint = f'quote it, "{written}": YAML reads {written} as the number {err.get("input")}'
            line, column = doc.value_at(path)
            out.append(Diagnostic(doc.name, line, column, dotted(path), _message(err), hint))
            continue
        elif err["type"] == "string_pattern_mismatch":
            pattern = str(err.get("ctx", {}).get("pattern", ""))
            hint = patterns.HINTS.get(pattern) or patterns.WORDS.get(pattern, "")
            # A mapping key that breaks the pattern is reported at the key, a value at the value.
            line, column = doc.where(path) if err["loc"][-1:] == ("[key]",) else doc.value_at(path)
            out.append(
                Diagnostic(doc.name, line, column, dotted(path), "is not in the form expected here", hint)
            )
            continue
        out.append(doc.diagnostic(path, _message(err), hint))
    # A union failing on every branch reports once per branch; keep one line per path.
    unique: dict[tuple[str, int, int], Diagnostic] = {}
    for d in out:
        unique.setdefault((d.field, d.line, d.column), d)
    return list(unique.values())
