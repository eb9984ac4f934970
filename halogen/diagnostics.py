"""Errors are data: every problem found is a Diagnostic, printed once at the CLI boundary."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Literal

Severity = Literal["error", "warning"]
Format = Literal["text", "json", "github"]


@dataclass(frozen=True, order=True)
class Diagnostic:
    """One problem, positioned as precisely as the input allows (line/column are 1-based, 0 = unknown)."""

    file: str
    line: int
    column: int
    field: str
    message: str
    hint: str = ""
    severity: Severity = "error"

    def text(self) -> str:
        where = self.file
        if self.line:
            where += f":{self.line}:{self.column or 1}"
        field = f" {self.field}:" if self.field else ""
        label = "" if self.severity == "error" else " warning:"
        hint = f" ({self.hint})" if self.hint else ""
        return f"{where}:{label}{field} {self.message}{hint}"


class Invalid(Exception):
    """Raised with every diagnostic of a failed stage, never with just the first."""

    def __init__(self, diagnostics: Iterable[Diagnostic]) -> None:
        self.diagnostics = tuple(sorted(diagnostics))
        super().__init__("\n".join(d.text() for d in self.diagnostics))


def errors(diagnostics: Iterable[Diagnostic]) -> list[Diagnostic]:
    return [d for d in diagnostics if d.severity == "error"]


def _github_escape(value: str, *, prop: bool = False) -> str:
    value = value.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
    if prop:
        value = value.replace(":", "%3A").replace(",", "%2C")
    return value


def render(diagnostics: Sequence[Diagnostic], fmt: Format) -> str:
    """Render for a terminal, a machine, or GitHub Actions annotations."""
    ordered = sorted(diagnostics)
    if fmt == "json":
        return json.dumps([asdict(d) for d in ordered], indent=2)
    if fmt == "github":
        lines = []
        for d in ordered:
            props = [f"file={_github_escape(d.file, prop=True)}"]
            if d.line:
                props += [f"line={d.line}", f"col={d.column or 1}"]
            if d.field:
                props.append(f"title={_github_escape(d.field, prop=True)}")
            message = d.message + (f" ({d.hint})" if d.hint else "")
            lines.append(f"::{d.severity} {','.join(props)}::{_github_escape(message)}")
        return "\n".join(lines)
    return "\n".join(d.text() for d in ordered)
